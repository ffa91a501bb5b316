"""Reads the configured market data sources now: the job the worker runs on a schedule, run by hand."""

import argparse
import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from holdings.market_data.services import market_data_refresh
from holdings.market_data.sources import SourceNotConfigured

# sysexits.h EX_TEMPFAIL: every failure may pass (a timeout, an HTTP 5xx): a later run may succeed.
EXIT_TRY_AGAIN = 75


def _day(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = (
        "Reads each market data source of settings.MARKET_DATA_SOURCES (exchange rates, daily closes of the assets "
        "that have a symbol at it) and stores what is new; a value changed at the source replaces the stored one. "
        "Running it twice writes nothing the second time. A source that fails (unreachable, or answering "
        "something that is not its format) writes nothing and is reported; the others still run. Exit status: 0 "
        f"when every source succeeded, 1 when one answered garbage, {EXIT_TRY_AGAIN} when every failure was "
        "the source being unreachable (try again later)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--source",
            action="append",
            dest="sources",
            metavar="NAME",
            help="Only this source, by its name in MARKET_DATA_SOURCES (repeat for several; default: all).",
        )
        parser.add_argument(
            "--since",
            type=_day,
            default=None,
            metavar="YYYY-MM-DD",
            help="Store only quotes dated on or after this day (default: every day the source publishes).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            reports = market_data_refresh(sources=options["sources"], since=options["since"])
        except SourceNotConfigured as error:
            raise CommandError(str(error)) from None
        if not reports:
            self.stdout.write("No market data source is configured (settings.MARKET_DATA_SOURCES).")
        for report in reports:
            if report.ok:
                self.stdout.write(str(report))
            else:
                self.stderr.write(f"FAILED, nothing written: {report}")
        failed = [report for report in reports if not report.ok]
        if failed:
            names = ", ".join(report.source for report in failed)
            transient = all(report.transient for report in failed)
            raise CommandError(
                f"{len(failed)} source(s) failed: {names}" + ("; try again later." if transient else "."),
                returncode=EXIT_TRY_AGAIN if transient else 1,
            )
