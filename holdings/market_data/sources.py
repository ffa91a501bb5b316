"""The interface every market data source implements, the sources configured in settings, and reading a URL.

A source is a class named in `settings.MARKET_DATA_SOURCES` ({name: {"CLASS": dotted path, "URL": url or path,
"TIMEOUT": seconds}}). It reads its URL (http, https, file) or local path and answers plain quotes; it writes
nothing: `holdings.market_data.services` decides what is new and stores it through holdings' services.

Two kinds of failure, because a job treats them differently:
- `SourceError`: the source answered, but not with what it should (an HTTP 4xx, not XML or CSV, a wrong column,
  a rate that is not a positive number, a truncated file). Retrying gets the same answer: the run fails and
  says why.
- `SourceUnavailable`: the source could not be reached or did not finish answering (a timeout, a refused
  connection, an HTTP 5xx or 429, a body shorter than announced). A later try may succeed: the job retries it.
"""

import abc
import datetime
import http.client
import re
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from portfolio_site import outbound

USER_AGENT = "portfolio-back-office/0.1 (market data refresh)"
SOURCE_NAME = re.compile(r"[a-z0-9_-]{1,32}")


class MarketDataError(Exception):
    """A source could not be read, or answered something that is not market data."""


class SourceError(MarketDataError):
    """The source answered garbage: retrying gets the same answer."""


class SourceUnavailable(MarketDataError):
    """The source could not be reached or stopped answering midway: a later try may succeed."""


class SourceNotConfigured(MarketDataError):
    """A source was asked for by a name that settings.MARKET_DATA_SOURCES does not define."""


@dataclass(frozen=True)
class RateQuote:
    """`rate` units of `quote` for one unit of `base` on `date` (holdings.models.FxRate's direction)."""

    base: str
    quote: str
    date: datetime.date
    rate: Decimal


@dataclass(frozen=True)
class PriceQuote:
    """The unadjusted close of the asset the source calls `symbol`, on `date`, in the asset's currency."""

    symbol: str
    date: datetime.date
    close: Decimal


@dataclass
class Quotes:
    """What one read of a source answered; `notes` says what it left out on purpose, and why."""

    rates: list[RateQuote] = field(default_factory=list)
    prices: list[PriceQuote] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class MarketDataSource(abc.ABC):
    """One configured source: its name (the key in MARKET_DATA_SOURCES, and the `source` of an AssetSymbol), where
    it reads and how long it waits. Subclasses implement `fetch`."""

    # True for a source of prices: it is asked for the symbols assets have at it (AssetSymbol rows).
    needs_symbols: ClassVar[bool] = False

    def __init__(self, *, name: str, url: str, timeout: float = 30.0, max_bytes: int = 64 * 2**20) -> None:
        self.name, self.url, self.timeout, self.max_bytes = name, url, timeout, max_bytes

    @abc.abstractmethod
    def fetch(self, *, symbols: Sequence[str]) -> Quotes:
        """Reads the source (for `symbols`, if it needs them) and answers every quote it published, or raises
        SourceError / SourceUnavailable. All or nothing: a source that fails on one symbol answers nothing."""

    def read(self, url: str) -> bytes:
        return read_url(url, source=self.name, timeout=self.timeout, max_bytes=self.max_bytes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.url}>"


def read_url(url: str, *, source: str, timeout: float, max_bytes: int) -> bytes:
    """The bytes at `url` (http, https, file) or at a local path; at most `max_bytes` (a larger answer is refused,
    not cut)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return _read_http(url, source=source, timeout=timeout, max_bytes=max_bytes)
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urlsplit(url).path))
    elif scheme == "" or len(scheme) == 1:  # a path (one letter: a Windows drive)
        path = Path(url)
    else:
        raise SourceError(f"{source}: cannot read {url}: only http, https and file URLs or a path are supported.")
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise SourceError(f"{source}: cannot read {path}: {error.strerror or error}.") from error
    return _bounded(data, url, source=source, max_bytes=max_bytes)


def _read_http(url: str, *, source: str, timeout: float, max_bytes: int) -> bytes:
    # Redirects followed (to http(s) only): a public source may move, and these requests carry no credentials.
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        answer = outbound.send(request, timeout=timeout, max_bytes=max_bytes, follow_redirects=True)
    except outbound.AnswerRefused as error:
        raise SourceError(f"{source}: {error} (MARKET_DATA_MAX_BYTES)") from None
    except outbound.Unreachable as error:
        raise SourceUnavailable(f"{source}: {error} Try again later.") from None
    if not 200 <= answer.status < 300:
        reason = http.client.responses.get(answer.status, "")
        said = f"{source}: {url} answered HTTP {answer.status} {reason}".rstrip()
        # A server error, "too many requests" or "request timeout" passes; any other answer is our request's fault.
        if answer.status >= 500 or answer.status in (408, 429):
            raise SourceUnavailable(f"{said}; try again later.")
        raise SourceError(f"{said}.")
    return _bounded(answer.body, url, source=source, max_bytes=max_bytes)


def _bounded(data: bytes, url: str, *, source: str, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise SourceError(f"{source}: {url} is larger than {max_bytes} bytes (MARKET_DATA_MAX_BYTES).")
    if not data.strip():
        raise SourceError(f"{source}: {url} is empty.")
    return data


def configured_sources(names: Sequence[str] | None = None) -> list[MarketDataSource]:
    """The sources of settings.MARKET_DATA_SOURCES, in their order (only those named, if `names`); an unknown name
    raises SourceNotConfigured, a wrong entry ImproperlyConfigured."""
    config: dict[str, dict[str, Any]] = settings.MARKET_DATA_SOURCES
    if names:
        unknown = [name for name in names if name not in config]
        if unknown:
            known = ", ".join(config) or "none"
            raise SourceNotConfigured(f"No market data source is called {', '.join(unknown)} (configured: {known}).")
    sources = []
    for name, entry in config.items():
        if names and name not in names:
            continue
        if not SOURCE_NAME.fullmatch(name):
            raise ImproperlyConfigured(f"MARKET_DATA_SOURCES: {name!r} is not a source name (a-z, 0-9, - and _).")
        try:
            cls = import_string(entry["CLASS"])
            url = entry["URL"]
        except (KeyError, ImportError) as error:
            raise ImproperlyConfigured(
                f"MARKET_DATA_SOURCES[{name!r}] needs a CLASS to import and a URL: {error}"
            ) from error
        if not (isinstance(cls, type) and issubclass(cls, MarketDataSource)):
            raise ImproperlyConfigured(f"MARKET_DATA_SOURCES[{name!r}]: {entry['CLASS']} is not a MarketDataSource.")
        sources.append(
            cls(
                name=name,
                url=url,
                timeout=float(entry.get("TIMEOUT", settings.MARKET_DATA_TIMEOUT)),
                max_bytes=int(entry.get("MAX_BYTES", settings.MARKET_DATA_MAX_BYTES)),
            )
        )
    return sources
