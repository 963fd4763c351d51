"""Production static files: collectstatic with the production storage (hashed, compressed names),
served by WhiteNoise gzip-compressed with far-future cache headers; and the alert page's bytes over
the wire in that mode (printed)."""

import re

import pytest
from django.core.management import call_command
from django.test import Client

ONE_YEAR = 365 * 24 * 3600
PRODUCTION_STATIC = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


@pytest.fixture(scope="module")
def collected(tmp_path_factory, django_db_blocker):
    root = tmp_path_factory.mktemp("staticfiles")
    from django.test import override_settings

    with override_settings(STORAGES=PRODUCTION_STATIC, STATIC_ROOT=root, WHITENOISE_USE_FINDERS=False):
        call_command("collectstatic", interactive=False, verbosity=0)
    return root


@pytest.fixture
def production_static(collected, settings):
    settings.STORAGES = PRODUCTION_STATIC
    settings.STATIC_ROOT = collected
    settings.WHITENOISE_USE_FINDERS = False
    settings.DEBUG = False
    return collected


def _max_age(response) -> int:
    match = re.search(r"max-age=(\d+)", response.get("Cache-Control", ""))
    return int(match.group(1)) if match else 0


def _body_bytes(response) -> int:
    return len(b"".join(response.streaming_content) if response.streaming else response.content)


def test_plotly_is_served_hashed_gzipped_and_cached_for_a_year(production_static, db):
    from django.contrib.staticfiles.storage import staticfiles_storage

    url = staticfiles_storage.url("vendor/plotly/plotly.min.js")
    assert re.fullmatch(r"/static/vendor/plotly/plotly\.min\.[0-9a-f]{12}\.js", url), url
    client = Client()  # a fresh handler: WhiteNoise reads the collected files

    plain = client.get(url)
    gzipped = client.get(url, HTTP_ACCEPT_ENCODING="gzip")

    assert plain.status_code == gzipped.status_code == 200
    assert "Content-Encoding" not in plain
    assert gzipped["Content-Encoding"] == "gzip" and "Accept-Encoding" in gzipped["Vary"]
    assert _max_age(gzipped) >= ONE_YEAR and "immutable" in gzipped["Cache-Control"]
    raw, compressed = _body_bytes(plain), _body_bytes(gzipped)
    assert compressed < raw / 3  # 4.6 MB of JavaScript compresses several times over
    print(f"\nplotly.min.js: {raw:,} bytes raw, {compressed:,} bytes gzip")


@pytest.fixture
def alert(db, model_version, prediction_payload, alice, django_capture_on_commit_callbacks):
    from explanations.services import prediction_ingest
    from patients.models import Alert

    payload = prediction_payload(9)
    payload["patient"]["unit"] = "MICU"
    with django_capture_on_commit_callbacks(execute=True):  # explained, so the waterfall is drawn
        prediction_ingest(payload=payload, source="rest")
    return Alert.objects.get()


def test_the_alert_page_over_the_wire_with_production_static_files(production_static, alert, alice):
    client = Client()
    client.force_login(alice)
    page = client.get(f"/alerts/{alert.pk}/", HTTP_ACCEPT_ENCODING="gzip")
    assert page.status_code == 200
    html = page.content.decode()
    assets = sorted(set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html)))
    assert any("plotly.min." in a for a in assets)
    total = 0
    for url in assets:
        response = client.get(url, HTTP_ACCEPT_ENCODING="gzip")
        assert response.status_code == 200, url
        assert _max_age(response) >= ONE_YEAR, url  # every asset hashed: cached for good
        total += _body_bytes(response)
    html_bytes = len(page.content)
    print(
        f"\nalert page, production static files: HTML {html_bytes:,} bytes (uncompressed by Django), "
        f"{len(assets)} static files {total:,} bytes gzip; first load {html_bytes + total:,} bytes, "
        f"second load {html_bytes:,} bytes (static files from the browser's cache)"
    )
    assert html_bytes + total < 2_000_000  # plotly gzipped (about 1.5 MB), not its 4.8 MB
    assert html_bytes < 300_000  # the second load: the budget
