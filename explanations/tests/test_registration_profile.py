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


def test_the_registry_only_announces_and_the_sweep_builds_a_profile_whose_build_was_lost(
    db, model_store, demo_bundle_dir, django_capture_on_commit_callbacks
):
    """The registry imports nothing of the explanation side: it sends version_registered. When
    that message is lost (here: the on-commit callbacks never run), the sweep builds the profile."""
    from explanations.tasks import explanation_sweep

    with django_capture_on_commit_callbacks(execute=False):
        version, _ = model_register(path=demo_bundle_dir, promote=True)
    assert not VersionProfile.objects.filter(version=version).exists()

    explanation_sweep()

    assert VersionProfile.objects.get(version=version).status == VersionProfile.Status.READY
