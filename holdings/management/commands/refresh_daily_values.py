"""Brings the daily value table up to date: what a scheduled job will do once the job queue exists."""

import datetime
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from holdings.services import daily_values_refresh


class Command(BaseCommand):
    help = (
        "Rebuilds the daily values of every portfolio whose history changed (a back-dated movement, a price, a "
        "rate) from the first changed day on, through today or --until. Portfolios already up to date are not read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--portfolio", type=int, action="append", dest="portfolios", help="Only this id (repeat).")
        parser.add_argument(
            "--until", type=datetime.date.fromisoformat, default=None, help="Last day to build (YYYY-MM-DD)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        count = daily_values_refresh(portfolio_ids=options["portfolios"], until=options["until"])
        elapsed = time.perf_counter() - started
        self.stdout.write(f"Rebuilt the daily values of {count} portfolio(s) in {elapsed:.2f} s.")
