from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts.models import EmailLoginCode, LoginSession, RecoveryCode, SecurityEvent, User
from accounts.tests.factories import PASSWORD, UserFactory
from portfolio_site.settings import base
from portfolio_site.testing import refused_by

pytestmark = pytest.mark.django_db


def test_email_is_stored_lower_case_and_is_the_login_whatever_its_case() -> None:
    user = User.objects.create_user("Anna.Lind@Example.COM", PASSWORD)
    assert user.email == "anna.lind@example.com"
    assert authenticate(username="ANNA.LIND@example.com", password=PASSWORD) == user


def test_database_refuses_two_users_whose_emails_differ_only_in_case() -> None:
    UserFactory(email="anna@example.com")
    with refused_by("accounts_user_email_ci_unique"), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {User._meta.db_table} (email, password, full_name, is_active, is_staff, is_superuser, "
            "is_verified, created_at, updated_at) VALUES ('ANNA@example.com', '', '', true, false, false, false, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )


def test_create_superuser_is_staff_and_verified() -> None:
    admin = User.objects.create_superuser("root@example.com", PASSWORD)
    assert (admin.is_superuser, admin.is_staff, admin.is_verified) == (True, True, True)


def test_create_user_needs_an_email() -> None:
    with pytest.raises(ValueError, match="email"):
        User.objects.create_user("", PASSWORD)


@override_settings(PASSWORD_HASHERS=base.PASSWORD_HASHERS)
def test_a_new_password_is_stored_as_an_argon2_hash_that_verifies() -> None:
    # The test settings use a fast hasher; these are the settings every other environment runs with.
    user = UserFactory()
    user.set_password(PASSWORD)
    user.save()
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")
    assert user.check_password(PASSWORD)
    assert not user.check_password(PASSWORD + "!")


@override_settings(PASSWORD_HASHERS=base.PASSWORD_HASHERS)
def test_a_bcrypt_hash_from_another_system_verifies_and_is_upgraded_to_argon2() -> None:
    user = UserFactory()
    user.password = make_password(PASSWORD, hasher="bcrypt_sha256")
    user.save()
    assert user.check_password(PASSWORD)
    user.refresh_from_db()
    assert user.password.startswith("argon2")


def test_user_str_prefers_the_full_name() -> None:
    assert str(UserFactory.build(full_name="Anna Lind", email="a@example.com")) == "Anna Lind"
    assert str(UserFactory.build(full_name="", email="a@example.com")) == "a@example.com"


# --- The database's rules on login sessions, security events and one-time codes -------------------


def _session(**fields: Any) -> LoginSession:
    return LoginSession.objects.create(user=UserFactory(), expires_at=timezone.now() + timedelta(hours=1), **fields)


@pytest.mark.parametrize(
    "fields",
    [{"revoked_at": None, "end_reason": "logout"}, {"end_reason": ""}],
    ids=["reason-without-end", "end-without-reason"],
)
def test_database_refuses_a_session_whose_end_and_reason_disagree(fields: dict[str, Any]) -> None:
    with refused_by("accounts_session_revoked_with_reason"):
        _session(**{"revoked_at": timezone.now(), **fields})


def test_database_refuses_a_session_on_an_unknown_channel() -> None:
    with refused_by("accounts_session_channel_valid"):
        _session(channel="fax")


def test_database_refuses_a_security_event_of_an_unknown_kind() -> None:
    with refused_by("accounts_event_kind_valid"):
        SecurityEvent.objects.create(kind="moon_landing")


def test_database_refuses_a_login_code_that_expires_when_it_is_created() -> None:
    now = timezone.now()
    with refused_by("accounts_login_code_expires_after_creation"):
        EmailLoginCode.objects.create(user=UserFactory(), code_hash="x", created_at=now, expires_at=now)


def test_database_refuses_one_recovery_code_twice_for_one_user_but_not_for_two() -> None:
    user = UserFactory()
    RecoveryCode.objects.create(user=user, code_hash="same")
    with refused_by("accounts_recovery_code_unique"):
        RecoveryCode.objects.create(user=user, code_hash="same")
    RecoveryCode.objects.create(user=UserFactory(), code_hash="same")
