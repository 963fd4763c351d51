"""What a bundle may be: format version, feature kinds, size limits, tolerances, name patterns, the
challenger's trusted types, and the error every check raises."""

import re

FORMAT_VERSION = 1
FEATURE_KINDS = ("numeric", "binary", "categorical")
EXPECTED_RISK_TOLERANCE = 1e-5
ADDITIVITY_SAMPLE = 200
ADDITIVITY_SEED = 0
RANDOMISATION_ROWS = 100
# What a bundle .zip may unpack to unless the caller says otherwise
# (settings.MODEL_BUNDLE_MAX_UNPACKED_BYTES).
MAX_UNCOMPRESSED_BYTES = 256 * 1024**2
# bundle.yaml describes a bundle in a few kilobytes; anything near this is not a description.
MAX_SPEC_BYTES = 256 * 1024
CHALLENGER_TRUSTED_TYPES = (
    "sklearn.pipeline.Pipeline",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
    "numpy.dtype",
    "numpy.ndarray",
    "builtins.slice",
)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
FEATURE_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class BundleError(ValueError):
    """A bundle that cannot be registered; the message names the first problem."""
