"""Encryption at rest for secrets we must be able to read back (TOTP seeds).

`settings.ENCRYPTION_KEYS` is a list of Fernet keys: the first encrypts, any decrypts, so a new key is put
first, `manage.py rotate_encryption_keys` re-encrypts, and the old key is dropped afterwards.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["InvalidToken", "decrypt", "encrypt", "reencrypt"]


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("ENCRYPTION_KEYS must name at least one key.")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as error:
        raise ImproperlyConfigured(f"ENCRYPTION_KEYS holds a key that is not a Fernet key: {error}") from None


def _current() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    return _current().decrypt(ciphertext.encode()).decode()


def reencrypt(ciphertext: str) -> str:
    """The same secret under the first (newest) key."""
    return _current().rotate(ciphertext.encode()).decode()
