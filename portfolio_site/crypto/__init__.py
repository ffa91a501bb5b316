"""Encryption at rest for secrets we must be able to read back (TOTP seeds, broker credentials), for every app.

`settings.ENCRYPTION_KEYS` is a list of Fernet keys: the first encrypts, any decrypts, so a new key is put
first, `manage.py rotate_encryption_keys` re-encrypts, and the old key is dropped afterwards.

An app stores a secret in an `EncryptedTextField` (it holds the token `encrypt()` returns, never the
plaintext); declaring one registers it, so the rotation reaches every encrypted field of every app without
importing any of them. `register_encrypted_field()` registers a plain text field the same way.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps as app_registry  # `apps` would be shadowed by this package's apps.py
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

__all__ = [
    "EncryptedTextField",
    "InvalidToken",
    "RotationCount",
    "SecretUndecryptable",
    "decrypt",
    "encrypt",
    "encrypted_fields",
    "encrypted_fields_reencrypt",
    "reencrypt",
    "register_encrypted_field",
    "unregister_encrypted_field",
]


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("ENCRYPTION_KEYS must name at least one key.")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as error:
        raise ImproperlyConfigured(f"ENCRYPTION_KEYS holds a key that is not a Fernet key: {error}") from None


@cache
def _first(key: str) -> Fernet:
    return Fernet(key)


def _current() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _current().decrypt(ciphertext.encode()).decode()


def reencrypt(ciphertext: str) -> str:
    """The same secret under the first (newest) key."""
    return _current().rotate(ciphertext.encode()).decode()


def _under_first_key(ciphertext: str) -> bool:
    _current()  # the configuration's own errors first
    try:
        _first(settings.ENCRYPTION_KEYS[0]).decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


# --- The registry of encrypted fields -------------------------------------------------------------

# (app_label.ModelName, field name) -> the model class that declared it.
_registry: dict[tuple[str, str], type[models.Model]] = {}


def register_encrypted_field(model: type[models.Model], field_name: str) -> None:
    """Marks `model.field_name` as holding tokens of `encrypt()`, to be re-encrypted by the rotation."""
    if model._meta.abstract:
        return
    _registry[(model._meta.label, field_name)] = model


def unregister_encrypted_field(model: type[models.Model], field_name: str) -> None:
    _registry.pop((model._meta.label, field_name), None)


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    """Every registered encrypted field of an installed model, as (model, field name), in label order.

    Models built for migrations or never installed are left out: only the app registry's own class counts.
    """
    found = []
    for (label, field_name), model in sorted(_registry.items()):
        try:
            installed = app_registry.get_model(label)
        except LookupError:
            continue
        if installed is model:
            found.append((model, field_name))
    return found


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A text column holding a Fernet token (from `encrypt()`), never plaintext; registered for key rotation.

    Migrations see a plain TextField (the column is one), so moving or renaming this class never needs one.
    """

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        register_encrypted_field(cls, name)

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.TextField", args, kwargs


# --- Rotation -------------------------------------------------------------------------------------


class SecretUndecryptable(Exception):
    """A stored secret cannot be decrypted with any key of settings.ENCRYPTION_KEYS."""

    def __init__(self, field: str, pk: object) -> None:
        self.field = field
        self.pk = pk
        super().__init__(f"The secret in {field} of row {pk} cannot be decrypted with any key of ENCRYPTION_KEYS.")


@dataclass(frozen=True)
class RotationCount:
    field: str  # "app_label.Model.field"
    reencrypted: int
    current: int  # already under the first key: left alone


def _pk_batches(model: type[models.Model], field_name: str, batch_size: int) -> Iterator[list[Any]]:
    """The primary keys of the rows holding a secret in the field, in key order, a batch at a time."""
    rows = model._base_manager.exclude(**{f"{field_name}__isnull": True}).exclude(**{field_name: ""})
    last = None
    while True:
        page = rows.filter(pk__gt=last) if last is not None else rows
        pks = list(page.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return
        yield pks
        last = pks[-1]


def _check_readable(model: type[models.Model], field_name: str, batch_size: int) -> None:
    label = f"{model._meta.label}.{field_name}"
    for pks in _pk_batches(model, field_name, batch_size):
        for pk, value in model._base_manager.filter(pk__in=pks).values_list("pk", field_name):
            try:
                _current().decrypt(value.encode())
            except InvalidToken:
                raise SecretUndecryptable(label, pk) from None


def _reencrypt_field(model: type[models.Model], field_name: str, batch_size: int) -> RotationCount:
    label = f"{model._meta.label}.{field_name}"
    reencrypted = current = 0
    for pks in _pk_batches(model, field_name, batch_size):
        with transaction.atomic():
            rows = list(model._base_manager.select_for_update().filter(pk__in=pks).order_by("pk").only(field_name))
            changed = []
            for row in rows:
                value = getattr(row, field_name)
                if not value or _under_first_key(value):
                    current += 1
                    continue
                try:
                    setattr(row, field_name, reencrypt(value))
                except InvalidToken:
                    raise SecretUndecryptable(label, row.pk) from None
                changed.append(row)
            model._base_manager.bulk_update(changed, [field_name])
            reencrypted += len(changed)
    return RotationCount(field=label, reencrypted=reencrypted, current=current)


def encrypted_fields_reencrypt(*, batch_size: int = 500) -> list[RotationCount]:
    """Re-encrypts every registered encrypted field of every app with the first key of ENCRYPTION_KEYS.

    First every stored secret is checked to decrypt under some configured key: if one does not,
    SecretUndecryptable is raised and nothing is changed. Then each field is rewritten a batch of rows at a
    time, each batch in its own transaction with its rows locked. A secret already under the first key is
    left alone, so running it again (or after an interruption) only finishes what is left.
    """
    fields = encrypted_fields()
    for model, field_name in fields:
        _check_readable(model, field_name, batch_size)
    return [_reencrypt_field(model, field_name, batch_size) for model, field_name in fields]
