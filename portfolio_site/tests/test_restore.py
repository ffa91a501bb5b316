"""A backup restores: the README's pg_dump -Fc / pg_restore --no-owner, into an empty database, gives back every
balance, position, valuation and daily value unchanged.

The book is built through the factories and the daily value rebuild, committed (so that pg_dump, another process,
sees it), dumped, and restored into a database of its own made from template0 and dropped at the end whatever
happens. The figures are the app's own reads (`book_figures`): computed here on the original, and in a fresh
process pointed at the restored database (its own local-memory cache, so no figure can come from a cache warmed on
the original). The restored process then rebuilds every daily value from scratch and must find the same rows: the
restored movements, not only the copied derived table, give the figures.

PostgreSQL only (pg_dump/pg_restore of the server's major version; skipped with the reason when missing).
Budget: about 10 s on the PostgreSQL CI run.
"""

import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from clients.models import Client, Portfolio
from clients.services import portfolios_history_changed
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import Allocation, FxRate, PortfolioDailyValue, PositionSnapshot, Price
from holdings.selectors import client_positions, daily_values, portfolio_positions
from holdings.services import daily_values_refresh
from holdings.tests.factories import AssetFactory, BuyFactory, FxRateFactory, PriceFactory, SellFactory
from holdings.valuation import AVERAGE, FIFO, client_valuation, portfolio_valuation
from ledger.models import Transaction
from ledger.selectors import client_balances, portfolio_balances
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.postgres

BASE_DIR = Path(settings.BASE_DIR)
D = datetime.date
START, END = D(2026, 1, 1), D(2026, 1, 31)
AS_OF = (D(2026, 1, 10), D(2026, 1, 20), END)


# --- The figures, read through the app's selectors and valuation -------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-able and exact: decimals and dates as strings, dataclasses as dicts, dict keys as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple | set):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal | datetime.date):
        return str(value)
    return value


def book_figures() -> dict[str, Any]:
    """Every balance, position, valuation (both cost methods) and daily value of the book, by client and portfolio
    (keyed by primary key: a restore keeps them), plus SQL totals of the tables they come from."""
    figures: dict[str, Any] = {"clients": {}, "portfolios": {}}
    for client in Client.objects.order_by("pk"):
        portfolio_ids = list(client.portfolios.order_by("pk").values_list("pk", flat=True))
        figures["clients"][client.pk] = {
            "balances": client_balances(client_id=client.pk),
            "positions": client_positions(client_id=client.pk),
            "valuations": [
                client_valuation(client=client, portfolio_ids=portfolio_ids, as_of=day, cost_method=method)
                for day in AS_OF
                for method in (AVERAGE, FIFO)
            ],
        }
    for portfolio in Portfolio.objects.order_by("pk"):
        figures["portfolios"][portfolio.pk] = {
            "balances": [portfolio_balances(portfolio_id=portfolio.pk, as_of=day) for day in (*AS_OF, None)],
            "positions": [portfolio_positions(portfolio_id=portfolio.pk, as_of=day) for day in (*AS_OF, None)],
            "valuations": [
                portfolio_valuation(portfolio=portfolio, as_of=day, cost_method=method)
                for day in AS_OF
                for method in (AVERAGE, FIFO)
            ],
            "daily_values": daily_values(portfolio_id=portfolio.pk, start=START, end=END),
        }
    figures["totals"] = {
        "transactions": Transaction.objects.aggregate(n=Count("pk"), amount=Sum("amount")),
        "allocations": Allocation.objects.aggregate(n=Count("pk"), quantity=Sum("quantity")),
        "prices": Price.objects.aggregate(n=Count("pk"), close=Sum("close")),
        "fx_rates": FxRate.objects.aggregate(n=Count("pk"), rate=Sum("rate")),
        "daily_values": PortfolioDailyValue.objects.aggregate(n=Count("pk"), value=Sum("value")),
        "position_snapshots": PositionSnapshot.objects.count(),
    }
    return _plain(figures)


def restored_figures_main() -> None:
    """Run in a fresh process on the restored database: the figures as restored, then after every daily value is
    rebuilt from the restored movements (must be the same)."""
    restored = book_figures()
    portfolios_history_changed(portfolios=Portfolio.objects.values("pk"), since=START)
    daily_values_refresh()
    database = connection.settings_dict["NAME"]
    print(json.dumps({"database": database, "restored": restored, "rebuilt": book_figures()}))  # noqa: T201


# --- The book -------------------------------------------------------------------------------------------------


def build_book() -> None:
    """Two clients (EUR), one with a second portfolio in USD; a US and a European asset priced every day; EUR/USD
    every day; deposits in both currencies, a withdrawal, buys and sells with fees; the daily values rebuilt."""
    days = [START + datetime.timedelta(days=n) for n in range((END - START).days + 1)]
    us = AssetFactory(ticker="RSTUS", currency="USD", exchange="XNAS")
    eu = AssetFactory(ticker="RSTEU", currency="EUR", exchange="XPAR")
    for n, day in enumerate(days):
        PriceFactory(asset=us, date=day, close=Decimal("100") + Decimal(n) / 4)
        PriceFactory(asset=eu, date=day, close=Decimal("50") - Decimal(n) / 8)
        FxRateFactory(date=day, rate=Decimal("1.08") + Decimal(n % 5) / 100)
    alice, bob = ClientFactory.create(), ClientFactory.create()
    alice_main, bob_main = main_portfolio(alice), main_portfolio(bob)
    alice_usd = PortfolioFactory(client=alice, name="Dollars", base_currency="USD")
    for portfolio, currency in ((alice_main, "EUR"), (alice_usd, "USD"), (bob_main, "EUR"), (bob_main, "USD")):
        TransactionFactory(portfolio=portfolio, amount=Decimal("50000"), currency=currency, date=D(2026, 1, 2))
    TransactionFactory(
        portfolio=bob_main,
        kind=Transaction.Kind.WITHDRAWAL,
        amount=Decimal("1234.5678"),
        currency="EUR",
        date=D(2026, 1, 25),
    )
    BuyFactory(
        portfolio=alice_main,
        asset=eu,
        quantity=Decimal("100"),
        price=Decimal("49.5"),
        fees=Decimal("2"),
        date=D(2026, 1, 5),
    )
    BuyFactory(portfolio=alice_main, asset=us, quantity=Decimal("30"), price=Decimal("101"), date=D(2026, 1, 6))
    BuyFactory(portfolio=alice_usd, asset=us, quantity=Decimal("12.5"), price=Decimal("102.25"), date=D(2026, 1, 8))
    SellFactory(
        portfolio=alice_main,
        asset=eu,
        quantity=Decimal("40"),
        price=Decimal("48.75"),
        fees=Decimal("1.5"),
        date=D(2026, 1, 18),
    )
    BuyFactory(portfolio=bob_main, asset=us, quantity=Decimal("20"), price=Decimal("100.5"), date=D(2026, 1, 3))
    BuyFactory(portfolio=bob_main, asset=us, quantity=Decimal("10"), price=Decimal("104"), date=D(2026, 1, 12))
    SellFactory(portfolio=bob_main, asset=us, quantity=Decimal("15"), price=Decimal("106"), date=D(2026, 1, 22))
    BuyFactory(portfolio=bob_main, asset=eu, quantity=Decimal("7"), price=Decimal("47"), date=D(2026, 1, 27))
    portfolios_history_changed(portfolios=Portfolio.objects.values("pk"), since=START)
    daily_values_refresh()


# --- PostgreSQL's tools and a database of its own -------------------------------------------------------------


def _server_major() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        return int(cursor.fetchone()[0]) // 10000


def pg_tool(name: str) -> str:
    """The server's own major version of pg_dump/pg_restore: the cluster's binaries first (Debian keeps every
    installed major in /usr/lib/postgresql/N/bin), else PATH's when its major matches; skips with the reason."""
    major = _server_major()
    for candidate in (f"/usr/lib/postgresql/{major}/bin/{name}", shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False).stdout
            # "pg_dump (PostgreSQL) 15.20 (Debian ...)"
            if version.split()[2].split(".")[0] == str(major):
                return candidate
    pytest.skip(f"needs {name} of PostgreSQL {major} (the server's major): apt-get install postgresql-client-{major}")


def _libpq(database: str) -> dict[str, str]:
    db = connection.settings_dict
    return {
        "PGHOST": db["HOST"] or "127.0.0.1",
        "PGPORT": str(db["PORT"] or 5432),
        "PGUSER": db["USER"] or "postgres",
        "PGPASSWORD": db["PASSWORD"] or "",
        "PGDATABASE": database,
    }


def _database_url(database: str) -> str:
    env = _libpq(database)
    password = f":{env['PGPASSWORD']}" if env["PGPASSWORD"] else ""
    return f"postgres://{env['PGUSER']}{password}@{env['PGHOST']}:{env['PGPORT']}/{database}"


def _admin_execute(sql: str) -> None:
    env = _libpq("postgres")
    with psycopg.connect(
        host=env["PGHOST"],
        port=env["PGPORT"],
        user=env["PGUSER"],
        password=env["PGPASSWORD"],
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new empty database (from template0: nothing of template1's), uniquely named, dropped at the end even when
    the test fails (FORCE: a process left connected cannot keep it)."""
    name = f"restore_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield name
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- The test -------------------------------------------------------------------------------------------------


def test_a_dump_restored_into_an_empty_database_gives_every_balance_position_valuation_and_daily_value_unchanged(
    transactional_db: None, empty_database: str, tmp_path: Path
) -> None:
    pg_dump, pg_restore = pg_tool("pg_dump"), pg_tool("pg_restore")
    build_book()
    original = book_figures()
    assert original["totals"]["allocations"]["n"] == 8
    # Every portfolio has a daily value for every day of January from its first movement (the 2nd) on.
    assert [len(p["daily_values"]) for p in original["portfolios"].values()] == [30, 30, 30]

    dump = tmp_path / "portfolio.dump"
    source_env = {**os.environ, **_libpq(connection.settings_dict["NAME"])}
    subprocess.run([pg_dump, "-Fc", "--no-owner", "-f", str(dump)], env=source_env, check=True, timeout=120)
    subprocess.run(
        [pg_restore, "--no-owner", "--exit-on-error", "--dbname", empty_database, str(dump)],
        env={**os.environ, **_libpq(empty_database)},
        check=True,
        timeout=120,
    )

    # A fresh process on the restored database, with the local-memory cache (no REDIS_URL): nothing it reads can
    # come from a cache the original filled.
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_SETTINGS_MODULE="portfolio_site.settings.test", DATABASE_URL=_database_url(empty_database))
    code = (
        "import django; django.setup(); from portfolio_site.tests.test_restore import restored_figures_main as m; m()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["database"] == empty_database  # the figures below are the restored database's
    assert found["restored"] == original
    assert found["rebuilt"] == original
