from collections.abc import Iterator
from io import StringIO

import pyotp
import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import models
from django.test import override_settings

from accounts.models import TOTPDevice
from accounts.tests.factories import UserFactory
from clients.models import Client
from clients.tests.factories import ClientFactory
from portfolio_site.crypto import (
    EncryptedTextField,
    InvalidToken,
    decrypt,
    encrypt,
    encrypted_fields,
    register_encrypted_field,
    unregister_encrypted_field,
)
from portfolio_site.crypto.management.commands.rotate_encryption_keys import Command
from trading.models import BrokerConnection
from trading.tests.factories import AlpacaConnectionFactory

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


def device_with_secret(secret: str) -> TOTPDevice:
    with override_settings(ENCRYPTION_KEYS=[OLD]):
        return TOTPDevice.objects.create(user=UserFactory(), encrypted_secret=encrypt(secret))


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def client_notes_registered() -> Iterator[None]:
    """A second app's field in the registry, as trading's broker secrets will be: clients.Client.notes."""
    register_encrypted_field(Client, "notes")
    yield
    unregister_encrypted_field(Client, "notes")


def test_the_registry_lists_the_totp_secret() -> None:
    assert (TOTPDevice, "encrypted_secret") in encrypted_fields()


def test_declaring_an_encrypted_field_registers_it_but_migrations_see_a_text_field() -> None:
    field = TOTPDevice._meta.get_field("encrypted_secret")
    assert isinstance(field, EncryptedTextField)
    _name, path, _args, _kwargs = field.deconstruct()
    assert path == "django.db.models.TextField"


def test_an_abstract_models_encrypted_field_is_registered_on_its_concrete_models_only() -> None:
    class Base(models.Model):
        secret = EncryptedTextField()

        class Meta:
            abstract = True
            app_label = "accounts"

    # Neither an abstract model nor a model missing from the app registry is rotated.
    assert all(model is not Base for model, _ in encrypted_fields())


@pytest.mark.django_db
def test_secrets_under_the_old_key_are_readable_with_the_new_key_only_after_rotation() -> None:
    secrets = [pyotp.random_base32() for _ in range(3)]
    devices = [device_with_secret(secret) for secret in secrets]
    with override_settings(ENCRYPTION_KEYS=[NEW]), pytest.raises(InvalidToken):
        decrypt(devices[0].encrypted_secret)
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        output = rotate("--batch-size", "2")
    assert "accounts.TOTPDevice.encrypted_secret: re-encrypted 3, already under the first key 0." in output
    with override_settings(ENCRYPTION_KEYS=[NEW]):
        assert [decrypt(device.encrypted_secret) for device in TOTPDevice.objects.order_by("pk")] == secrets
    with override_settings(ENCRYPTION_KEYS=[OLD]), pytest.raises(InvalidToken):
        decrypt(TOTPDevice.objects.first().encrypted_secret)  # type: ignore[union-attr]


@pytest.mark.django_db
def test_running_the_rotation_again_changes_nothing() -> None:
    device_with_secret(pyotp.random_base32())
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        rotate()
        after_first = TOTPDevice.objects.get().encrypted_secret
        output = rotate()
    assert "accounts.TOTPDevice.encrypted_secret: re-encrypted 0, already under the first key 1." in output
    assert TOTPDevice.objects.get().encrypted_secret == after_first


@pytest.mark.django_db
def test_every_registered_field_of_every_app_is_rotated_in_one_run(client_notes_registered: None) -> None:
    secret = pyotp.random_base32()
    device_with_secret(secret)
    with override_settings(ENCRYPTION_KEYS=[OLD]):
        client = ClientFactory(notes=encrypt("broker secret"))
        connection = AlpacaConnectionFactory(key="PK-ROTATE", secret="sk-rotate")
    ClientFactory(notes="")  # no secret stored: nothing to rotate
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        output = rotate()
    assert "accounts.TOTPDevice.encrypted_secret: re-encrypted 1" in output
    assert "clients.Client.notes: re-encrypted 1, already under the first key 0." in output
    assert "trading.BrokerConnection.api_key: re-encrypted 1, already under the first key 0." in output
    assert "trading.BrokerConnection.api_secret: re-encrypted 1, already under the first key 0." in output
    assert "Re-encrypted 4 secret(s) in 4 field(s)" in output
    with override_settings(ENCRYPTION_KEYS=[NEW]):
        assert decrypt(Client.objects.get(pk=client.pk).notes) == "broker secret"
        assert decrypt(TOTPDevice.objects.get().encrypted_secret) == secret
        assert BrokerConnection.objects.get(pk=connection.pk).credentials() == ("PK-ROTATE", "sk-rotate")


@pytest.mark.django_db
def test_rotation_with_no_secrets_reports_zero() -> None:
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        output = rotate()
    assert "accounts.TOTPDevice.encrypted_secret: re-encrypted 0, already under the first key 0." in output


@pytest.mark.django_db
def test_a_secret_under_no_configured_key_fails_the_command_and_changes_nothing(
    client_notes_registered: None,
) -> None:
    readable = device_with_secret(pyotp.random_base32())
    with override_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        lost = ClientFactory(notes=encrypt("lost"))
    with (
        override_settings(ENCRYPTION_KEYS=[NEW, OLD]),
        pytest.raises(CommandError, match=f"clients.Client.notes of row {lost.pk}.*Nothing was changed"),
    ):
        rotate()
    # TOTPDevice comes first in the registry, yet its secret was not rewritten.
    assert TOTPDevice.objects.get(pk=readable.pk).encrypted_secret == readable.encrypted_secret


def test_help_explains_how_to_rotate() -> None:
    text = " ".join(Command().create_parser("manage.py", "rotate_encryption_keys").format_help().split())
    assert "Re-encrypts every stored secret of every app's encrypted fields" in text
    assert "with the first key of settings.ENCRYPTION_KEYS" in text
    assert "run this command, then drop the old keys" in text
