"""The European Central Bank's euro foreign exchange reference rates, in its published XML.

The daily file (https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml) and the historical ones
(eurofxref-hist-90d.xml, eurofxref-hist.xml) have one shape:

    <gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
                     xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
      <gesmes:subject>Reference rates</gesmes:subject>
      <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
      <Cube>
        <Cube time="2026-11-27">
          <Cube currency="USD" rate="1.0368"/> ...

A rate is units of the currency for one euro: stored as FxRate(base="EUR", quote=currency), the direction
holdings.fx reads. Currencies that are no longer ISO 4217 codes (those the euro replaced, in the historical file)
are left out and named in the notes.

The file is read with expat directly rather than a tree: it names the line of every element (so an error can
say where), and a document type declaration is refused outright, so no entity, internal or external, is ever
declared, let alone expanded (no billion laughs, no external fetch) without adding a dependency such as
defusedxml for the one thing it would do here.
"""

import datetime
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from xml.parsers import expat

from .sources import MarketDataSource, Quotes, RateQuote, SourceError
from .values import BadValue, currency_code, iso_date, positive_decimal

GESMES = "http://www.gesmes.org/xml/2002-08-01"
EUROFXREF = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
SEPARATOR = "|"
ENVELOPE = f"{GESMES}{SEPARATOR}Envelope"
CUBE = f"{EUROFXREF}{SEPARATOR}Cube"
BASE = "EUR"


class _Refused(Exception):
    pass


class _Reader:
    """Collects the days and rates as expat walks the file, checking each element as it comes."""

    def __init__(self) -> None:
        self.parser = expat.ParserCreate(namespace_separator=SEPARATOR)
        self.parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self.parser.StartDoctypeDeclHandler = self._doctype
        self.parser.EntityDeclHandler = self._doctype
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.depth = 0
        self.day: datetime.date | None = None
        self.day_depth = 0
        self.days: dict[datetime.date, int] = {}
        self.rates: list[RateQuote] = []
        self.seen: set[tuple[datetime.date, str]] = set()
        self.retired: set[str] = set()

    def _where(self) -> str:
        return f"line {self.parser.CurrentLineNumber}"

    def _doctype(self, *args: Any) -> None:
        raise _Refused(f"{self._where()}: a document type declaration is refused (no entities are read)")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            if name != ENVELOPE:
                tag = name.rsplit(SEPARATOR, 1)[-1]
                raise _Refused(f"{self._where()}: the document is a <{tag}>, not the ECB's gesmes:Envelope")
            return
        if name != CUBE:
            return
        if "time" in attributes:
            if self.day is not None:
                raise _Refused(f"{self._where()}: a day's Cube inside another day's")
            self.day = self._value(iso_date, attributes["time"], what="time")
            if self.day in self.days:
                raise _Refused(f"{self._where()}: day {self.day} again (first at line {self.days[self.day]})")
            self.days[self.day] = self.parser.CurrentLineNumber
            self.day_depth = self.depth
        elif "currency" in attributes or "rate" in attributes:
            self._rate(attributes)

    def _rate(self, attributes: dict[str, str]) -> None:
        if self.day is None:
            raise _Refused(f'{self._where()}: a rate outside any day\'s Cube time="..."')
        if "currency" not in attributes or "rate" not in attributes:
            raise _Refused(f"{self._where()}: a rate's Cube needs both currency and rate")
        code = self._value(currency_code, attributes["currency"])
        if code is None:
            self.retired.add(attributes["currency"])
            return
        if code == BASE:
            raise _Refused(f"{self._where()}: a rate of the euro against itself")
        if (self.day, code) in self.seen:
            raise _Refused(f"{self._where()}: {code} twice on {self.day}")
        self.seen.add((self.day, code))
        rate: Decimal = self._value(positive_decimal, attributes["rate"], what=f"rate of {code}", field="rate")
        self.rates.append(RateQuote(base=BASE, quote=code, date=self.day, rate=rate))

    def _value(self, parse: Any, text: str, **kwargs: Any) -> Any:
        try:
            return parse(text, **kwargs)
        except BadValue as error:
            raise _Refused(f"{self._where()}: {error}") from None

    def _end(self, name: str) -> None:
        if self.day is not None and self.depth == self.day_depth:
            self.day = None
        self.depth -= 1


def parse_reference_rates(data: bytes, *, source: str) -> Quotes:
    """The rates of an ECB reference rates file; SourceError naming the line of the first thing wrong in it (a
    truncated file is not well-formed XML: expat says where it ends)."""
    reader = _Reader()
    try:
        reader.parser.Parse(data, True)
    except expat.ExpatError as error:
        # An error on the last line is the file ending before the document does: a cut download or copy.
        ends_early = error.lineno >= data.rstrip().count(b"\n") + 1
        raise SourceError(
            f"{source}: not the ECB's reference rates XML: line {error.lineno}, column {error.offset}: "
            f"{expat.ErrorString(error.code)}" + (" (the file ends early: truncated?)." if ends_early else ".")
        ) from None
    except _Refused as error:
        raise SourceError(f"{source}: {error}.") from None
    if not reader.days:
        raise SourceError(f'{source}: no day (Cube time="...") in the file.')
    notes = []
    if reader.retired:
        notes.append(f"left out currencies no longer in ISO 4217: {', '.join(sorted(reader.retired))}")
    return Quotes(rates=reader.rates, notes=notes)


class EcbReferenceRates(MarketDataSource):
    """The ECB's euro reference rates (daily or historical XML) at `url`, as EUR/currency FxRate rows."""

    def fetch(self, *, symbols: Sequence[str] = ()) -> Quotes:
        return parse_reference_rates(self.read(self.url), source=self.name)
