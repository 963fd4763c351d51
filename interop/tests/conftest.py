"""The FHIR test modules share the transaction Bundle fixture of test_fhir.py."""

from interop.tests.test_fhir import fhir_bundle  # noqa: F401 (a fixture)
