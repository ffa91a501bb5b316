from io import StringIO

import pyotp
import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from accounts.crypto import InvalidToken, decrypt, encrypt
from accounts.management.commands.rotate_encryption_keys import Command
from accounts.models import TOTPDevice
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db
OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def device_with_secret(secret: str) -> TOTPDevice:
    with override_settings(ENCRYPTION_KEYS=[OLD]):
        return TOTPDevice.objects.create(user=UserFactory(), encrypted_secret=encrypt(secret))


def rotate() -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    return out.getvalue()


def test_secrets_under_the_old_key_are_readable_with_the_new_key_only_after_rotation() -> None:
    secrets = [pyotp.random_base32() for _ in range(3)]
    devices = [device_with_secret(secret) for secret in secrets]
    with override_settings(ENCRYPTION_KEYS=[NEW]), pytest.raises(InvalidToken):
        decrypt(devices[0].encrypted_secret)
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        output = rotate()
    assert "Re-encrypted 3 TOTP secret(s)" in output
    with override_settings(ENCRYPTION_KEYS=[NEW]):
        assert [decrypt(device.encrypted_secret) for device in TOTPDevice.objects.order_by("pk")] == secrets
    with override_settings(ENCRYPTION_KEYS=[OLD]), pytest.raises(InvalidToken):
        decrypt(TOTPDevice.objects.first().encrypted_secret)  # type: ignore[union-attr]


def test_rotation_with_no_secrets_reports_zero() -> None:
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        assert "Re-encrypted 0 TOTP secret(s)" in rotate()


def test_a_secret_under_no_configured_key_fails_the_command_and_changes_nothing() -> None:
    readable = device_with_secret(pyotp.random_base32())
    with override_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        lost = TOTPDevice.objects.create(user=UserFactory(), encrypted_secret=encrypt(pyotp.random_base32()))
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]), pytest.raises(CommandError, match=f"device {lost.pk}"):
        rotate()
    readable_after = TOTPDevice.objects.get(pk=readable.pk)
    assert readable_after.encrypted_secret == readable.encrypted_secret


def test_help_explains_how_to_rotate() -> None:
    text = " ".join(Command().create_parser("manage.py", "rotate_encryption_keys").format_help().split())
    assert "Re-encrypts every stored TOTP secret with the first key of settings.ENCRYPTION_KEYS" in text
    assert "run this command, then drop the old keys" in text
