"""Re-encrypt every registered encrypted field of every app with the newest encryption key."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portfolio_site.crypto import SecretUndecryptable, encrypted_fields_reencrypt


class Command(BaseCommand):
    help = (
        "Re-encrypts every stored secret of every app's encrypted fields (TOTP secrets and any other field "
        "registered in portfolio_site.crypto) with the first key of settings.ENCRYPTION_KEYS, and reports the "
        "count per model.field. To rotate: put a new Fernet key first in ENCRYPTION_KEYS (keeping the old ones "
        "after it), deploy, run this command, then drop the old keys. Every secret is first checked to decrypt "
        "with a configured key: if one does not, nothing is changed and the command fails. Rows are then "
        "rewritten in batches, each in its own transaction; a secret already under the first key is left "
        "alone, so the command can be run again safely."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            counts = encrypted_fields_reencrypt(batch_size=options["batch_size"])
        except SecretUndecryptable as error:
            raise CommandError(f"{error} Nothing was changed.") from None
        for count in counts:
            self.stdout.write(
                f"{count.field}: re-encrypted {count.reencrypted}, already under the first key {count.current}."
            )
        total = sum(count.reencrypted for count in counts)
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {total} secret(s) in {len(counts)} field(s) with the first key.")
        )
