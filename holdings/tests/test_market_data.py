"""Market data sources read over HTTP from a loopback server answering in the published formats: what they
store, that a second run stores nothing, and that garbage or an unreachable source stores nothing."""

import datetime
import re
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from holdings.market_data.services import market_data_refresh
from holdings.market_data.sources import SourceError, SourceNotConfigured, SourceUnavailable
from holdings.models import AssetSymbol, FxRate, Price
from holdings.tasks import refresh_market_data
from holdings.tests.factories import AllocationFactory, AssetFactory
from holdings.tests.market_server import FIXTURES, MarketServer
from portfolio_site.jobs.models import JobRun

pytestmark = pytest.mark.django_db

ECB = "holdings.market_data.ecb.EcbReferenceRates"
CSV = "holdings.market_data.csv_prices.CsvDailyPrices"
ECB_DAY = datetime.date(2026, 11, 27)


@pytest.fixture
def server() -> Iterator[MarketServer]:
    with MarketServer() as running:
        yield running


def configure(settings: Any, **sources: tuple[str, str]) -> None:
    settings.MARKET_DATA_SOURCES = {
        name: {"CLASS": cls, "URL": url, "TIMEOUT": 0.5} for name, (cls, url) in sources.items()
    }


def symbol(name: str, at: str, **asset: Any) -> AssetSymbol:
    """An asset (its ticker made of the symbol's letters) and its symbol `name` at the source `at`."""
    ticker = re.sub(r"[^A-Z0-9.]", "", name.upper()).strip(".")
    return AssetSymbol.objects.create(asset=AssetFactory(ticker=ticker, **asset), source=at, symbol=name)


def _marker(portfolio: Portfolio) -> datetime.date | None:
    return Portfolio.objects.values_list("history_changed_from", flat=True).get(pk=portfolio.pk)


# --- ECB reference rates ------------------------------------------------------------------------


def test_the_ecb_daily_file_is_stored_as_rates_of_one_euro(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-daily.xml")))

    [report] = market_data_refresh()

    assert report.ok, report.error
    assert report.created == 29
    usd = FxRate.objects.get(quote="USD")
    assert (usd.base, usd.date, usd.rate) == ("EUR", ECB_DAY, Decimal("1.1587"))
    assert FxRate.objects.get(quote="JPY").rate == Decimal("181.21")
    assert set(FxRate.objects.values_list("base", flat=True)) == {"EUR"}


def test_an_ecb_historical_file_stores_every_day_it_holds(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-hist-excerpt.xml")))

    [report] = market_data_refresh()

    assert report.created == 3 * 29
    assert dict(FxRate.objects.filter(quote="USD").values_list("date", "rate")) == {
        datetime.date(2026, 11, 24): Decimal("1.1531"),
        datetime.date(2026, 11, 25): Decimal("1.1552"),
        datetime.date(2026, 11, 26): Decimal("1.1569"),
    }


def test_refreshing_twice_writes_nothing_the_second_time(settings: Any, server: MarketServer) -> None:
    configure(
        settings,
        ecb=(ECB, server.url("/files/ecb-hist-excerpt.xml")),
        prices=(CSV, server.url("/files/{symbol}.csv")),
    )
    symbol("sap.de", "prices", currency="EUR")
    market_data_refresh()
    stored = list(FxRate.objects.values_list("pk", "updated_at")) + list(Price.objects.values_list("pk", "updated_at"))
    portfolio = main_portfolio(ClientFactory())
    Portfolio.objects.filter(pk=portfolio.pk).update(history_changed_from=None)

    reports = market_data_refresh()

    assert [(r.created, r.updated, r.unchanged) for r in reports] == [(0, 0, 87), (0, 0, 5)]
    assert (
        list(FxRate.objects.values_list("pk", "updated_at")) + list(Price.objects.values_list("pk", "updated_at"))
        == stored
    )
    assert _marker(portfolio) is None  # nothing changed, so no history went stale


def test_a_corrected_rate_replaces_the_stored_one_and_marks_history_stale_from_its_day(
    settings: Any, server: MarketServer
) -> None:
    FxRate.objects.create(base="EUR", quote="USD", date=ECB_DAY, rate=Decimal("1.1500"))
    portfolio = main_portfolio(ClientFactory())
    configure(settings, ecb=(ECB, server.url("/files/ecb-daily.xml")))

    [report] = market_data_refresh()

    assert (report.created, report.updated) == (28, 1)
    assert FxRate.objects.get(quote="USD", date=ECB_DAY).rate == Decimal("1.1587")
    assert FxRate.objects.filter(quote="USD").count() == 1
    assert _marker(portfolio) == ECB_DAY


def test_new_rates_mark_every_portfolio_stale_from_the_earliest_new_day(settings: Any, server: MarketServer) -> None:
    portfolio = main_portfolio(ClientFactory())
    configure(settings, ecb=(ECB, server.url("/files/ecb-hist-excerpt.xml")))

    market_data_refresh()

    assert _marker(portfolio) == datetime.date(2026, 11, 24)


def test_currencies_no_longer_in_iso_4217_are_left_out_and_named(settings: Any, server: MarketServer) -> None:
    body = (
        (FIXTURES / "ecb-daily.xml")
        .read_text()
        .replace("<Cube currency='USD'", "<Cube currency='CYP' rate='0.5826'/><Cube currency='USD'")
    )
    configure(settings, ecb=(ECB, server.serve("/hist.xml", body)))

    [report] = market_data_refresh()

    assert report.ok
    assert not FxRate.objects.filter(quote="CYP").exists()
    assert "CYP" in str(report)


def test_since_leaves_out_the_days_before_it(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-hist-excerpt.xml")))

    [report] = market_data_refresh(since=datetime.date(2026, 11, 26))

    assert set(FxRate.objects.values_list("date", flat=True)) == {datetime.date(2026, 11, 26)}
    assert report.created == 29
    assert "58 quote(s) dated before 2026-11-26 left out" in str(report)


def _daily(old: str, new: str) -> str:
    text = (FIXTURES / "ecb-daily.xml").read_text()
    assert old in text
    return text.replace(old, new)


GARBAGE_XML = {
    "an HTML page": (b"<!doctype html><html><body>Service unavailable</body></html>", "line 1"),
    "another XML document": (b'<?xml version="1.0"?>\n<rss><channel/></rss>', "not the ECB's gesmes:Envelope"),
    "a file cut mid-element": ((FIXTURES / "ecb-daily.xml").read_bytes()[:900], "truncated?"),
    "a file cut after a line": (
        _daily("</gesmes:Envelope>", "").split("<Cube currency='NOK'")[0],
        "line 20, column 3: no element found (the file ends early",
    ),
    "a rate that is not a number": (
        _daily("rate='181.21'", "rate='n/a'"),
        "line 10: rate of JPY 'n/a' is not a number",
    ),
    "a rate of zero": (_daily("rate='181.21'", "rate='0'"), "line 10: rate of JPY 0 is not greater than zero"),
    "a negative rate": (_daily("rate='181.21'", "rate='-181.21'"), "not greater than zero"),
    "a rate in exponent notation": (_daily("rate='181.21'", "rate='1.8121E2'"), "is not a number"),
    "a bad day": (_daily("time='2026-11-27'", "time='27.11.2026'"), "line 8: time '27.11.2026' is not a date"),
    "a currency twice": (_daily("currency='JPY'", "currency='USD'"), "line 10: USD twice on 2026-11-27"),
    "a malformed currency": (_daily("currency='JPY'", "currency='yen'"), "currency 'yen' is not a three-letter"),
    "a rate outside a day": (_daily("<Cube time='2026-11-27'>", "<Cube>"), "a rate outside any day"),
    "no day at all": (
        b'<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"><Cube/></gesmes:Envelope>',
        "no day",
    ),
    "an entity declaration": (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">]>\n'
        b'<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01">&lol;</gesmes:Envelope>',
        "document type declaration is refused",
    ),
    "an external entity": (
        b'<?xml version="1.0"?>\n<!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<e>&x;</e>',
        "document type declaration is refused",
    ),
}


@pytest.mark.parametrize(("body", "reason"), GARBAGE_XML.values(), ids=GARBAGE_XML.keys())
def test_an_ecb_file_that_is_not_what_the_ecb_publishes_writes_nothing_and_says_where(
    settings: Any, server: MarketServer, body: bytes | str, reason: str
) -> None:
    configure(settings, ecb=(ECB, server.serve("/eurofxref-daily.xml", body)))

    [report] = market_data_refresh()

    assert not FxRate.objects.exists()
    assert not report.ok
    assert not report.transient
    assert report.error is not None
    assert report.error.startswith("ecb: ")
    assert reason in report.error


# --- CSV daily prices ---------------------------------------------------------------------------


def test_csv_prices_store_each_symbols_unadjusted_close(settings: Any, server: MarketServer) -> None:
    configure(settings, prices=(CSV, server.url("/files/{symbol}.csv")))
    sap = symbol("sap.de", "prices", currency="EUR").asset
    apple = symbol("AAPL", "prices").asset

    [report] = market_data_refresh()

    assert report.created == 9
    assert Price.objects.get(asset=sap, date=ECB_DAY).close == Decimal("241.7")
    # Yahoo-style: "Close", not "Adj Close" (279.828613): splits are corporate actions, not folded into prices.
    assert Price.objects.get(asset=apple, date=ECB_DAY).close == Decimal("280.079987")


def test_assets_without_a_symbol_at_the_source_are_not_asked_for(settings: Any, server: MarketServer) -> None:
    configure(settings, prices=(CSV, server.url("/files/{symbol}.csv")))
    symbol("sap.de", "prices", currency="EUR")
    AssetFactory(ticker="MSFT")  # no symbol at all
    symbol("AAPL", "elsewhere")  # a symbol at another source only

    [report] = market_data_refresh()

    assert server.requests == ["/files/sap.de.csv"]
    assert report.created == 5
    assert set(Price.objects.values_list("asset__ticker", flat=True)) == {"SAP.DE"}


def test_a_price_source_with_no_symbol_anywhere_asks_for_nothing(settings: Any, server: MarketServer) -> None:
    configure(settings, prices=(CSV, server.url("/files/{symbol}.csv")))

    [report] = market_data_refresh()

    assert report.ok
    assert server.requests == []
    assert "no asset has a symbol at this source" in str(report)


def test_new_closes_mark_only_the_holders_stale_from_the_earliest_new_day(settings: Any, server: MarketServer) -> None:
    configure(settings, prices=(CSV, server.url("/files/{symbol}.csv")))
    sap = symbol("sap.de", "prices", currency="EUR").asset
    holder, bystander = main_portfolio(ClientFactory()), main_portfolio(ClientFactory())
    AllocationFactory(portfolio=holder, asset=sap)
    Portfolio.objects.update(history_changed_from=None)

    market_data_refresh(since=datetime.date(2026, 11, 25))

    assert _marker(holder) == datetime.date(2026, 11, 25)
    assert _marker(bystander) is None
    assert Price.objects.count() == 3


GOOD_CSV = "Date,Open,High,Low,Close,Volume\n2026-11-26,10,11,9,10.5,1000\n2026-11-27,10.5,11,10,10.8,1200\n"
GARBAGE_CSV = {
    "an HTML page": ("<html><body>Rate limit exceeded</body></html>\n", "line 1: not a daily price CSV"),
    "a service's no-data answer": ("No data\n", "no date or close column"),
    "wrong columns": ("Date,Price\n2026-11-27,10\n", "no close column"),
    "a truncated last line": (GOOD_CSV + "2026-11-28,10.8,11", "line 4: 3 fields where the header has 6"),
    "a close that is not a number": (
        GOOD_CSV.replace("10.8,1200", "null,1200"),
        "line 3: close 'null' is not a number",
    ),
    "a close of zero": (GOOD_CSV.replace("10.8,1200", "0,1200"), "line 3: close 0 is not greater than zero"),
    "a negative close": (GOOD_CSV.replace("10.8,1200", "-10.8,1200"), "not greater than zero"),
    "a close with too many decimals": (GOOD_CSV.replace("10.8,1200", "10.12345678901,1200"), "line 3: close"),
    "a bad date": (GOOD_CSV.replace("2026-11-27", "11/27/2026"), "line 3: date '11/27/2026' is not a date"),
    "a day twice": (GOOD_CSV.replace("2026-11-27", "2026-11-26"), "line 3: 2026-11-26 again (first at line 2)"),
    "a header only": ("Date,Open,High,Low,Close,Volume\n", "no prices in the file"),
    "not UTF-8": (b"Date,Close\n2026-11-27,\xff\xfe\n", "not a UTF-8 CSV file"),
}


@pytest.mark.parametrize(("body", "reason"), GARBAGE_CSV.values(), ids=GARBAGE_CSV.keys())
def test_a_price_file_that_is_not_a_daily_price_csv_writes_nothing_and_says_where(
    settings: Any, server: MarketServer, body: bytes | str, reason: str
) -> None:
    configure(settings, prices=(CSV, server.url("/prices/{symbol}.csv")))
    server.serve("/prices/GOOD.csv", GOOD_CSV)
    server.serve("/prices/ZZZ.csv", body)
    symbol("GOOD", "prices")
    symbol("ZZZ", "prices")

    [report] = market_data_refresh()

    assert not Price.objects.exists(), "one bad file: nothing of the source is stored, the good file's closes neither"
    assert not report.ok
    assert not report.transient
    assert report.error is not None
    assert report.error.startswith("prices: ZZZ: ")
    assert reason in report.error


def test_a_symbol_is_sent_url_quoted(settings: Any, server: MarketServer) -> None:
    configure(settings, prices=(CSV, server.url("/q/?s={symbol}&i=d")))
    server.serve("/q/?s=%5Espx&i=d", GOOD_CSV)
    symbol("^spx", "prices")

    [report] = market_data_refresh()

    assert report.ok, report.error
    assert report.created == 2


# --- Reading: files, HTTP errors, timeouts --------------------------------------------------------


def test_a_source_reads_a_file_url_or_a_plain_path(settings: Any) -> None:
    configure(
        settings,
        ecb=(ECB, (FIXTURES / "ecb-daily.xml").as_uri()),
        prices=(CSV, str(FIXTURES / "{symbol}.csv")),
    )
    symbol("sap.de", "prices", currency="EUR")

    reports = market_data_refresh()

    assert [(r.source, r.created) for r in reports] == [("ecb", 29), ("prices", 5)]


def test_a_symbol_cannot_climb_out_of_a_price_folder(settings: Any) -> None:
    configure(settings, prices=(CSV, str(FIXTURES / "{symbol}.csv")))
    symbol("../market_data/sap.de", "prices")

    [report] = market_data_refresh()

    assert report.error == "prices: the symbol '../market_data/sap.de' cannot name a file."


def test_a_missing_file_is_an_error_naming_it(settings: Any, tmp_path: Any) -> None:
    configure(settings, ecb=(ECB, str(tmp_path / "absent.xml")))

    [report] = market_data_refresh()

    assert report.error is not None
    assert report.error.startswith(f"ecb: cannot read {tmp_path / 'absent.xml'}")
    assert not report.transient


def test_an_http_404_is_an_error_not_worth_retrying(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/moved.xml")))

    [report] = market_data_refresh()

    assert not report.transient
    assert report.error == f"ecb: {server.url('/moved.xml')} answered HTTP 404 Not Found."


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_an_http_server_error_is_transient_and_writes_nothing(settings: Any, server: MarketServer, status: int) -> None:
    configure(settings, ecb=(ECB, server.serve("/daily.xml", "busy", status=status)))

    [report] = market_data_refresh()

    assert report.transient
    assert f"answered HTTP {status}" in (report.error or "")
    assert not FxRate.objects.exists()


def test_a_source_that_does_not_answer_in_time_is_transient(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.serve("/slow.xml", (FIXTURES / "ecb-daily.xml").read_bytes(), delay=2)))

    [report] = market_data_refresh()

    assert report.transient
    assert (report.error or "").startswith(f"ecb: Cannot reach {server.url('/slow.xml')}: ")
    assert not FxRate.objects.exists()


def test_a_body_shorter_than_announced_is_transient(settings: Any, server: MarketServer) -> None:
    body = (FIXTURES / "ecb-daily.xml").read_bytes()
    configure(settings, ecb=(ECB, server.serve("/cut.xml", body[:700], announced_length=len(body))))

    [report] = market_data_refresh()

    assert report.transient
    assert "stopped answering after" in (report.error or "")
    assert not FxRate.objects.exists()


def test_an_unreachable_source_is_transient(settings: Any) -> None:
    configure(settings, ecb=(ECB, "http://127.0.0.1:9/eurofxref-daily.xml"))  # the discard port: nothing listens

    [report] = market_data_refresh()

    assert report.transient


def test_one_failing_source_does_not_stop_the_others(settings: Any, server: MarketServer) -> None:
    configure(
        settings,
        prices=(CSV, server.serve("/down/{symbol}.csv", "down", status=503)),
        ecb=(ECB, server.url("/files/ecb-daily.xml")),
    )
    symbol("sap.de", "prices", currency="EUR")

    reports = market_data_refresh()

    assert [(r.source, r.ok) for r in reports] == [("prices", False), ("ecb", True)]
    assert FxRate.objects.count() == 29


def test_an_unknown_source_name_is_refused(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-daily.xml")))

    with pytest.raises(SourceNotConfigured, match="No market data source is called nope"):
        market_data_refresh(sources=["nope"])


def test_only_the_named_source_is_read(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-daily.xml")), prices=(CSV, server.url("/files/{symbol}.csv")))
    symbol("sap.de", "prices", currency="EUR")

    reports = market_data_refresh(sources=["prices"])

    assert [r.source for r in reports] == ["prices"]
    assert server.requests == ["/files/sap.de.csv"]


# --- The command ----------------------------------------------------------------------------------


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("refresh_market_data", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_reports_what_each_source_stored(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-daily.xml")))

    first, _ = run()
    second, _ = run()

    assert first == "ecb: 29 new, 0 updated, 0 already stored.\n"
    assert second == "ecb: 0 new, 0 updated, 29 already stored.\n"


def test_the_command_fails_with_status_1_naming_the_source_that_answered_garbage(
    settings: Any, server: MarketServer
) -> None:
    configure(settings, ecb=(ECB, server.serve("/daily.xml", _daily("rate='181.21'", "rate='abc'"))))

    with pytest.raises(CommandError, match=r"1 source\(s\) failed: ecb\.") as failure:
        run()

    assert failure.value.returncode == 1
    assert not FxRate.objects.exists()


def test_the_command_writes_the_reason_of_a_failure_to_stderr(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.serve("/daily.xml", _daily("rate='181.21'", "rate='abc'"))))
    err = StringIO()

    with pytest.raises(CommandError):
        call_command("refresh_market_data", stdout=StringIO(), stderr=err)

    assert err.getvalue() == "FAILED, nothing written: ecb: line 10: rate of JPY 'abc' is not a number.\n"


def test_the_command_exits_75_when_every_failure_may_pass(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.serve("/daily.xml", "busy", status=503)))

    with pytest.raises(CommandError, match="try again later") as failure:
        run()

    assert failure.value.returncode == 75


def test_the_command_honours_source_and_since(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-hist-excerpt.xml")), prices=(CSV, server.url("/x/{symbol}")))
    symbol("sap.de", "prices")

    out, _ = run("--source", "ecb", "--since", "2026-11-25")

    assert out.startswith("ecb: 58 new, 0 updated, 0 already stored; 29 quote(s) dated before 2026-11-25 left out")
    assert server.requests == ["/files/ecb-hist-excerpt.xml"]


def test_the_command_refuses_an_unknown_source(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-daily.xml")))

    with pytest.raises(CommandError, match=r"No market data source is called nope \(configured: ecb\)"):
        run("--source", "nope")


def test_the_command_refuses_a_since_that_is_not_a_date(settings: Any) -> None:
    configure(settings)

    with pytest.raises(CommandError, match="'yesterday' is not a date"):
        run("--since", "yesterday")


# --- The job ----------------------------------------------------------------------------------------


def test_the_job_stores_what_the_command_would_and_returns_the_reports(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.url("/files/ecb-hist-excerpt.xml")))

    result = refresh_market_data.apply(kwargs={"source": "ecb", "since": "2026-11-26"})

    assert result.successful()
    assert result.get() == [
        {
            "source": "ecb",
            "created": 29,
            "updated": 0,
            "unchanged": 0,
            "notes": ["58 quote(s) dated before 2026-11-26 left out"],
            "error": None,
        }
    ]
    assert FxRate.objects.count() == 29


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_the_job_fails_at_once_with_the_reason_when_a_source_answers_garbage(
    settings: Any, server: MarketServer
) -> None:
    configure(settings, ecb=(ECB, server.serve("/daily.xml", "<html>maintenance</html>")))

    result = refresh_market_data.apply(throw=False)

    assert result.failed()
    assert isinstance(result.result, SourceError)
    assert str(result.result) == "ecb: line 1: the document is a <html>, not the ECB's gesmes:Envelope."
    assert server.requests == ["/daily.xml"], "garbage is not retried"
    run = JobRun.objects.get()
    assert (run.outcome, run.retries) == (JobRun.Outcome.FAILED, 0)
    assert "the document is a <html>, not the ECB's gesmes:Envelope" in run.error


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_the_job_retries_an_unreachable_source_then_fails(settings: Any, server: MarketServer) -> None:
    configure(settings, ecb=(ECB, server.serve("/daily.xml", "busy", status=503)))

    result = refresh_market_data.apply(throw=False)

    assert isinstance(result.result, SourceUnavailable)
    assert len(server.requests) == 1 + refresh_market_data.max_retries


def test_the_commands_help_names_its_options_and_exit_statuses() -> None:
    from holdings.management.commands.refresh_market_data import Command

    text = " ".join(Command().create_parser("manage.py", "refresh_market_data").format_help().split())

    assert "--source NAME" in text
    assert "--since YYYY-MM-DD" in text
    assert "Exit status: 0 when every source succeeded, 1 when one answered garbage, 75 when every failure" in text
