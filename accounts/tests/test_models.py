import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from accounts.models import User
from accounts.tests.factories import PASSWORD, UserFactory
from portfolio_site.settings import base

pytestmark = pytest.mark.django_db


def test_email_is_stored_lower_case_and_is_the_login_whatever_its_case() -> None:
    user = User.objects.create_user("Anna.Lind@Example.COM", PASSWORD)
    assert user.email == "anna.lind@example.com"
    assert authenticate(username="ANNA.LIND@example.com", password=PASSWORD) == user


def test_database_refuses_two_users_whose_emails_differ_only_in_case() -> None:
    UserFactory(email="anna@example.com")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
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


def test_argon2_is_the_password_hasher() -> None:
    assert base.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"


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
