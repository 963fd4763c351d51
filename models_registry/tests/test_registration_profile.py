from explanations.models import VersionProfile
from models_registry.services import model_register


def test_registration_fits_the_explanation_profile_on_the_reference_set(
    db, model_store, demo_bundle_dir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        version, created = model_register(path=demo_bundle_dir, promote=True)

    assert created
    profile = VersionProfile.objects.get(version=version)
    assert profile.status == VersionProfile.Status.READY
    # The reference SHAP matrix is stored content-addressed beside the artifacts.
    assert (model_store / profile.reference_shap_sha256).exists()
