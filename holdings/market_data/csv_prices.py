"""Daily prices from CSV files, one file per symbol, as free data services publish them:

    Date,Open,High,Low,Close,Volume                (Stooq: https://stooq.com/q/d/l/?s={symbol}&i=d)
    Date,Open,High,Low,Close,Adj Close,Volume      (Yahoo-style downloads)

The URL (or path) names the symbol with `{symbol}` (URL-quoted when the URL is http or https), e.g.
`https://example.com/prices/{symbol}.csv` or `/srv/prices/{symbol}.csv`. The header is matched by name, in any
case and order; `Date` and `Close` are required, the other columns are read for nothing.

The close taken is `Close`, never `Adj Close`: a split is recorded as a corporate action, and a dividend as
income, so the stored close must be the one the market printed that day (a split-adjusted series would count the
split twice). Every row must have as many fields as the header (a shorter last line is a truncated file), a date
once, and a close that is a plain positive number.
"""

import csv
import io
from collections.abc import Sequence
from urllib.parse import quote, urlsplit

from .sources import MarketDataSource, PriceQuote, Quotes, SourceError
from .values import BadValue, iso_date, positive_decimal

REQUIRED = ("date", "close")


def parse_daily_prices(data: bytes, *, source: str, symbol: str) -> list[PriceQuote]:
    """The closes of one symbol's CSV; SourceError naming the source, symbol and line of the first bad thing."""
    where = f"{source}: {symbol}"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SourceError(f"{where}: not a UTF-8 CSV file (byte {error.start}).") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip().lower() for name in next(rows)]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            shown = ",".join(header)[:80]
            raise SourceError(
                f"{where}: line 1: not a daily price CSV: no {' or '.join(missing)} column (header: {shown!r})."
            )
        date_at, close_at = header.index("date"), header.index("close")
        quotes: list[PriceQuote] = []
        seen: dict[object, int] = {}
        for row in rows:
            line = rows.line_num
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise SourceError(
                    f"{where}: line {line}: {len(row)} fields where the header has {len(header)} (a truncated file?)."
                )
            try:
                day = iso_date(row[date_at])
                close = positive_decimal(row[close_at], what="close")
            except BadValue as error:
                raise SourceError(f"{where}: line {line}: {error}.") from None
            if day in seen:
                raise SourceError(f"{where}: line {line}: {day} again (first at line {seen[day]}).")
            seen[day] = line
            quotes.append(PriceQuote(symbol=symbol, date=day, close=close))
    except csv.Error as error:
        raise SourceError(f"{where}: line {rows.line_num}: not CSV: {error}.") from None
    except StopIteration:
        raise SourceError(f"{where}: the file is empty.") from None
    if not quotes:
        raise SourceError(f"{where}: no prices in the file.")
    return quotes


class CsvDailyPrices(MarketDataSource):
    """Daily closes from `url` with `{symbol}` replaced by each asset's symbol at this source."""

    needs_symbols = True

    def url_of(self, symbol: str) -> str:
        if "{symbol}" not in self.url:
            raise SourceError(f"{self.name}: its URL {self.url} has no {{symbol}} to fill in.")
        web = urlsplit(self.url).scheme.lower() in ("http", "https")
        if not web and ("/" in symbol or "\\" in symbol or symbol.strip(".") == ""):
            # A symbol is typed by staff: in a path it must name a file in the folder, not climb out of it.
            raise SourceError(f"{self.name}: the symbol {symbol!r} cannot name a file.")
        return self.url.replace("{symbol}", quote(symbol, safe="") if web else symbol)

    def fetch(self, *, symbols: Sequence[str]) -> Quotes:
        quotes = Quotes()
        for symbol in symbols:
            quotes.prices.extend(parse_daily_prices(self.read(self.url_of(symbol)), source=self.name, symbol=symbol))
        return quotes
