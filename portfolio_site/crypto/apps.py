from django.apps import AppConfig


class CryptoConfig(AppConfig):
    """Installed only so that Django finds `manage.py rotate_encryption_keys`; it has no models."""

    name = "portfolio_site.crypto"
    label = "crypto"
    verbose_name = "Encryption at rest"
