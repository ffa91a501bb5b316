from typing import Any

from django.core.management.base import BaseCommand

from accounts.services.counters import counters_purge


class Command(BaseCommand):
    help = (
        "Delete the security counters (login failures, lockouts, throttle counts, spent two-factor challenges) "
        "whose time window has ended. They count nothing any more; run it daily, as Django's clearsessions."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = counters_purge()
        self.stdout.write(f"Deleted {deleted} ended security counter(s).")
