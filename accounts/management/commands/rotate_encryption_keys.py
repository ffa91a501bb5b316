"""Re-encrypt the stored TOTP secrets with the newest encryption key."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.services.two_factor import SecretUndecryptable, totp_secrets_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypts every stored TOTP secret with the first key of settings.ENCRYPTION_KEYS, in one transaction. "
        "To rotate: put a new Fernet key first in ENCRYPTION_KEYS (keeping the old ones after it), deploy, run this "
        "command, then drop the old keys. If any secret cannot be decrypted with the configured keys, nothing is "
        "changed and the command fails."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = totp_secrets_reencrypt()
        except SecretUndecryptable as error:
            raise CommandError(f"{error} Nothing was changed.") from None
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} TOTP secret(s) with the first key."))
