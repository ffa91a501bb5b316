"""The one write of market data: read each configured source, store what is new or changed through holdings'
services (so caches and the daily values' staleness follow), and say what happened per source.

- Each source is one transaction: a source that fails (garbage or unreachable) writes nothing, and the others
  still run.
- Idempotent: a quote already stored with the same value writes nothing, so a second run writes nothing.
- A published value that differs from the stored one for the same day (the ECB or a price service correcting
  itself, or a hand-entered close) is replaced with the source's, through `price_update` / `fx_rate_update`:
  the source is the authority for the days it publishes, and the holders' daily values go stale from that day,
  as for any other back-dated change. The report counts these as "updated".
- `since` leaves out every quote dated before it (the files still read whole: the ECB publishes the daily or the
  whole history, a CSV service a symbol's whole series).
- Assets without a symbol at a price source are not asked for.
"""

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from holdings.models import AssetSymbol, FxRate, Price
from holdings.services import fx_rate_update, fx_rates_bulk_create, price_update, prices_bulk_create

from .sources import (
    MarketDataError,
    MarketDataSource,
    PriceQuote,
    RateQuote,
    SourceError,
    SourceUnavailable,
    configured_sources,
)


@dataclass
class SourceReport:
    """What one source's refresh did: rows created, updated (a changed value), unchanged; or why it failed."""

    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def __str__(self) -> str:
        if self.error is not None:
            return self.error
        text = f"{self.source}: {self.created} new, {self.updated} updated, {self.unchanged} already stored"
        return "; ".join([text, *self.notes]) + "."

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "notes": self.notes,
            "error": self.error,
        }


def market_data_refresh(
    *, sources: Sequence[str] | None = None, since: datetime.date | None = None
) -> list[SourceReport]:
    """Refreshes every configured source (or those named) and reports on each; raises SourceNotConfigured for a
    name settings do not define. A failing source does not raise: its report carries the error (see
    `market_data_raise_for_failures`)."""
    reports = []
    for source in configured_sources(sources):
        try:
            reports.append(_refresh(source, since=since))
        except MarketDataError as error:
            reports.append(
                SourceReport(source=source.name, error=str(error), transient=isinstance(error, SourceUnavailable))
            )
    return reports


def market_data_raise_for_failures(reports: Sequence[SourceReport]) -> None:
    """Raises when a source failed: SourceUnavailable when every failure may pass (worth retrying), else
    SourceError; the message names each failed source and why."""
    failed = [report for report in reports if not report.ok]
    if not failed:
        return
    message = " | ".join(str(report) for report in failed)
    if all(report.transient for report in failed):
        raise SourceUnavailable(message)
    raise SourceError(message)


def _refresh(source: MarketDataSource, *, since: datetime.date | None) -> SourceReport:
    report = SourceReport(source=source.name)
    symbols: dict[str, int] = {}
    if source.needs_symbols:
        symbols = dict(AssetSymbol.objects.filter(source=source.name).values_list("symbol", "asset_id"))
        if not symbols:
            report.notes.append("no asset has a symbol at this source")
            return report
    # Read before the transaction opens: a slow source must not hold it.
    quotes = source.fetch(symbols=sorted(symbols))
    report.notes.extend(quotes.notes)
    rates = [quote for quote in quotes.rates if since is None or quote.date >= since]
    prices = [quote for quote in quotes.prices if since is None or quote.date >= since]
    left_out = len(quotes.rates) + len(quotes.prices) - len(rates) - len(prices)
    if left_out:
        report.notes.append(f"{left_out} quote(s) dated before {since} left out")
    try:
        with transaction.atomic():
            _store_rates(rates, report)
            _store_prices(prices, symbols, report)
    except ValidationError as error:
        raise SourceError(f"{source.name}: refused: {' '.join(error.messages)}") from error
    except IntegrityError as error:
        # The rows were checked against what is stored: a refusal now is another run storing the same day.
        raise SourceUnavailable(f"{source.name}: another write of the same rows happened meanwhile: {error}") from error
    return report


def _store_rates(quotes: list[RateQuote], report: SourceReport) -> None:
    if not quotes:
        return
    stored = {
        (base, quote, date): (pk, rate)
        for pk, base, quote, date, rate in FxRate.objects.filter(
            base__in={q.base for q in quotes},
            quote__in={q.quote for q in quotes},
            date__range=(min(q.date for q in quotes), max(q.date for q in quotes)),
        ).values_list("pk", "base", "quote", "date", "rate")
    }
    new: list[FxRate] = []
    changed: dict[int, RateQuote] = {}
    for quote in quotes:
        found = stored.get((quote.base, quote.quote, quote.date))
        if found is None:
            new.append(FxRate(base=quote.base, quote=quote.quote, date=quote.date, rate=quote.rate))
        elif found[1] != quote.rate:
            changed[found[0]] = quote
    fx_rates_bulk_create(rates=new)
    for pk, row in FxRate.objects.in_bulk(list(changed)).items():
        fx_rate_update(fx_rate=row, rate=changed[pk].rate)
    report.created += len(new)
    report.updated += len(changed)
    report.unchanged += len(quotes) - len(new) - len(changed)


def _store_prices(quotes: list[PriceQuote], symbols: dict[str, int], report: SourceReport) -> None:
    if not quotes:
        return
    stored = {
        (asset_id, date): (pk, close)
        for pk, asset_id, date, close in Price.objects.filter(
            asset_id__in={symbols[q.symbol] for q in quotes},
            date__range=(min(q.date for q in quotes), max(q.date for q in quotes)),
        ).values_list("pk", "asset_id", "date", "close")
    }
    new: list[Price] = []
    changed: dict[int, PriceQuote] = {}
    for quote in quotes:
        asset_id = symbols[quote.symbol]
        found = stored.get((asset_id, quote.date))
        if found is None:
            new.append(Price(asset_id=asset_id, date=quote.date, close=quote.close))
        elif found[1] != quote.close:
            changed[found[0]] = quote
    prices_bulk_create(prices=new)
    for pk, row in Price.objects.in_bulk(list(changed)).items():
        price_update(price=row, close=changed[pk].close)
    report.created += len(new)
    report.updated += len(changed)
    report.unchanged += len(quotes) - len(new) - len(changed)
