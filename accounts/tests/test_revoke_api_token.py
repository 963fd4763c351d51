"""`manage.py revoke_api_token` and the Django admin's API tokens (pen test finding 9, audit of
issue 15): one token can be listed and revoked, by id or key prefix, or all of a user's; the token
stops working at once and keeps when and why it was revoked."""

import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken, Profile
from tests.fixtures.people import person_create

pytestmark = pytest.mark.django_db
CARD = "/api/v1/models/none/versions/1/card/"


def _token(username: str, name: str = "") -> tuple[ApiToken, str]:
    out = io.StringIO()
    call_command("create_api_token", username, "--name", name, stdout=out, stderr=io.StringIO())
    key = out.getvalue().strip()
    return ApiToken.objects.get(prefix=key[:8]), key


def _works(key: str) -> bool:
    """Whether the key still authenticates (a 404 for a model that does not exist, not a 401)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get(CARD).status_code != 401


def _revoke(*args: str) -> str:
    out = io.StringIO()
    call_command("revoke_api_token", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def admins(db):
    return person_create(username="admin2", role=Profile.Role.ADMIN), person_create(
        username="admin3", role=Profile.Role.ADMIN
    )


def test_one_token_is_revoked_by_id_or_prefix_and_the_others_keep_working(admins):
    (first, first_key), (second, second_key) = _token("admin2", "nightly"), _token("admin2", "laptop")
    assert _works(first_key) and _works(second_key)

    out = _revoke(first.prefix, "--reason", "laptop lost")
    assert out == f"Revoked API token {first.pk} ({first.prefix}…) of 'admin2'.\n"
    assert not _works(first_key) and _works(second_key)
    first.refresh_from_db()
    assert (first.is_active, first.revoked_reason) == (
        False,
        "revoked with manage.py revoke_api_token: laptop lost",
    )
    assert first.revoked_at is not None

    assert _revoke(str(second.pk)).startswith(f"Revoked API token {second.pk} ")
    assert not _works(second_key)
    # Again: said, and the first revocation (its time and reason) is kept.
    again = _revoke(first.prefix)
    assert "was already revoked" in again and "laptop lost" in again
    assert ApiToken.objects.get(pk=first.pk).revoked_at == first.revoked_at


def test_every_token_of_one_user(admins):
    keys = [_token("admin2")[1], _token("admin2")[1]]
    other = _token("admin3")[1]
    out = _revoke("--user", "admin2", "--all")
    assert out.count("Revoked API token") == 2
    assert [_works(k) for k in keys] == [False, False] and _works(other)
    assert _revoke("--user", "admin2", "--all") == "'admin2' has no active API token; nothing revoked.\n"


def test_list_shows_each_token_without_its_key_and_revokes_nothing(admins):
    token, key = _token("admin2", "nightly")
    revoked, _ = _token("admin3", "old")
    _revoke(str(revoked.pk))
    listed = _revoke("--list")
    lines = listed.splitlines()
    assert len(lines) == 2 and key not in listed
    assert lines[0].startswith(f"{token.pk}\t{token.prefix}…\tadmin2\tnightly\tscopes registry,patient-data")
    assert lines[0].endswith("\tactive") and "revoked" in lines[1]
    assert _revoke("--list", "--user", "admin3").splitlines() == [lines[1]]
    assert _works(key)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchpre"], "No API token with id or prefix 'nosuchpre'"),
        (["--all"], "Give TOKEN ids or prefixes, or --user USERNAME --all."),
        ([], "Give TOKEN ids or prefixes"),
        (["--user", "nobody", "--all"], "No user named 'nobody'."),
        (["--list", "--all"], "--list revokes nothing"),
    ],
)
def test_bad_arguments_say_what_to_do_and_revoke_nothing(admins, args, message):
    _, key = _token("admin2")
    with pytest.raises(CommandError, match=message):
        _revoke(*args)
    assert _works(key)


def test_an_unknown_token_among_several_revokes_none_of_them(admins):
    token, key = _token("admin2")
    with pytest.raises(CommandError):
        _revoke(token.prefix, "99999")
    assert _works(key)


def test_help_names_the_ways_to_choose_tokens(capsys):
    with pytest.raises(SystemExit):
        call_command("revoke_api_token", "--help")
    text = capsys.readouterr().out
    assert "--user USERNAME" in text and "--all" in text and "--list" in text and "prefix" in text


def test_the_admin_lists_tokens_read_only_and_revokes_with_an_action(admins, charlie, charlie_client):
    token, key = _token("admin2", "nightly")
    listing = charlie_client.get("/admin/accounts/apitoken/")
    assert listing.status_code == 200
    html = listing.content.decode()
    assert token.prefix in html and "nightly" in html and key not in html and token.key_hash not in html
    assert charlie_client.get("/admin/accounts/apitoken/add/").status_code == 403
    detail = charlie_client.get(f"/admin/accounts/apitoken/{token.pk}/change/")
    assert detail.status_code == 200 and 'name="name"' not in detail.content.decode()  # no form field

    response = charlie_client.post(
        "/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    assert "Revoked 1 API token(s)." in response.content.decode()
    token.refresh_from_db()
    assert (token.is_active, token.revoked_reason) == (False, "revoked by charlie in the Django admin")
    assert token.revoked_at is not None and not _works(key)
    # Never deleted: the record of who held it stays.
    assert charlie_client.get(f"/admin/accounts/apitoken/{token.pk}/delete/").status_code == 403
