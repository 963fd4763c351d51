"""python manage.py create_user (CONTRACT.md section 6)."""

import io

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import Profile

User = get_user_model()


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_user", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_creates_a_clinician_with_units_and_password_from_env(db, monkeypatch):
    monkeypatch.setenv("DANA_PASSWORD", "a-long-unusual-passphrase")
    out, _ = run(
        "dana", "--role", "clinician", "--units", "MICU, CCU,MICU", "--password-from-env", "DANA_PASSWORD"
    )
    user = User.objects.get(username="dana")
    assert (user.profile.role, user.profile.units, user.is_staff) == ("clinician", ["MICU", "CCU"], False)
    assert authenticate(username="dana", password="a-long-unusual-passphrase") == user
    assert "Created dana: role clinician, MICU, CCU." in out


def test_admin_gets_staff_and_update_changes_role_keeps_units(db, monkeypatch):
    monkeypatch.setenv("PW", "a-long-unusual-passphrase")
    run("erin", "--role", "clinician", "--units", "CCU", "--password-from-env", "PW")
    out, _ = run("erin", "--role", "admin", "--password-from-env", "PW")
    user = User.objects.get(username="erin")
    assert user.is_staff
    assert user.profile.role == Profile.Role.ADMIN
    assert user.profile.units == ["CCU"]
    assert "Updated erin: role admin, all units." in out
    assert Profile.objects.filter(user=user).count() == 1
    run("erin", "--role", "auditor", "--password-from-env", "PW")
    user.refresh_from_db()
    assert (user.is_staff, user.profile.role) == (False, "auditor")


def test_existing_user_without_profile_gets_one(db, monkeypatch):
    User.objects.create_user(username="frank", password="x")
    monkeypatch.setenv("PW", "a-long-unusual-passphrase")
    run("frank", "--role", "clinician", "--units", "MICU", "--password-from-env", "PW")
    assert User.objects.get(username="frank").profile.units == ["MICU"]


def test_clinician_without_units_is_warned(db, monkeypatch):
    monkeypatch.setenv("PW", "a-long-unusual-passphrase")
    _, err = run("gina", "--role", "clinician", "--password-from-env", "PW")
    assert "will see no patient" in err


def test_unset_env_var_fails_and_creates_nothing(db, monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(CommandError, match="NOPE is not set"):
        run("henry", "--role", "clinician", "--password-from-env", "NOPE")
    assert not User.objects.filter(username="henry").exists()


def test_weak_password_is_rejected(db, monkeypatch):
    monkeypatch.setenv("PW", "password")
    with pytest.raises(CommandError, match="Password rejected"):
        run("ivy", "--role", "clinician", "--password-from-env", "PW")
    assert not User.objects.filter(username="ivy").exists()


def test_no_password_and_no_terminal_fails_clearly(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="--password-from-env"):
        run("jack", "--role", "clinician")
    assert not User.objects.filter(username="jack").exists()


def test_prompts_for_the_password_at_a_terminal(db, monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty(""))
    answers = iter(["a-long-unusual-passphrase", "a-long-unusual-passphrase"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    run("kim", "--role", "auditor")
    assert authenticate(username="kim", password="a-long-unusual-passphrase").profile.role == "auditor"


def test_unknown_role_is_refused(db):
    with pytest.raises(CommandError, match="invalid choice"):
        run("lee", "--role", "surgeon", "--password-from-env", "PW")


def test_help_explains_roles():
    from django.core.management import get_commands, load_command_class

    command = load_command_class(get_commands()["create_user"], "create_user")
    help_text = " ".join(command.create_parser("manage.py", "create_user").format_help().split())
    assert "--password-from-env VAR" in help_text
    assert "auditor: every unit, read only" in help_text
