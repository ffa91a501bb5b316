#!/usr/bin/env python
"""Benchmark of `manage.py import transactions` against the database's own ceiling.

Generates a synthetic transactions CSV (N rows for a few thousand clients), then measures on one database,
each time into an empty ledger table with the same indexes and constraints:

  ours     the whole `manage.py import transactions FILE --quiet` process (parsing and validation included)
  ceiling  the same rows with client and portfolio ids already resolved, streamed as CSV bytes through one
           COPY ledger_transaction (...) FROM STDIN (FORMAT csv)   [PostgreSQL only]
  orm      Django's bulk_create of the same rows, 5,000 at a time

and prints rows/s of each, `ratio: ours / ceiling` on a line of its own, and the import's peak RSS.

With `--kind allocations` it measures `manage.py import allocations` instead: N buys and sells (each portfolio
trading a score of a few hundred assets, never selling more than it holds, its cash deposited first), then our
transactions import of N rows on the same database, and prints both rates, `ratio: allocations / transactions`
on a line of its own and the allocations import's peak RSS.

    .venv/bin/python bench/import_bench.py                      # 1,000,000 rows
    .venv/bin/python bench/import_bench.py --rows 100000
    .venv/bin/python bench/import_bench.py --database-url postgres://postgres@127.0.0.1:5432/portfolio_bench
    .venv/bin/python bench/import_bench.py --kind allocations --rows 200000

The database named by --database-url is created if missing and its ledger is emptied: never point it at
data you want to keep.
"""

import argparse
import csv
import datetime
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portfolio_bench"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the synthetic file (default 1,000,000)")
    parser.add_argument("--clients", type=int, default=3_000, help="distinct clients (default 3,000)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--skip-orm", action="store_true", help="leave out the (slow) bulk_create measurement")
    parser.add_argument(
        "--kind",
        choices=("transactions", "allocations"),
        default="transactions",
        help="what to measure: transactions against COPY (default), or allocations against transactions",
    )
    parser.add_argument("--assets", type=int, default=300, help="distinct assets of --kind allocations (default 300)")
    return parser.parse_args()


def ensure_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portfolio_site.settings.dev")
    os.environ["DEBUG"] = "false"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def client_emails(count: int) -> list[str]:
    return [f"bench-client-{n:05d}@example.com" for n in range(count)]


def ensure_clients(count: int) -> dict[str, tuple[int, int]]:
    """The bench clients, each with its single "Main" portfolio (the file names only clients): their (client id,
    portfolio id) by email."""
    from accounts.models import User
    from clients.models import Client, Portfolio

    advisor, _ = User.objects.get_or_create(email="bench-advisor@example.com", defaults={"is_staff": True})
    emails = client_emails(count)
    existing = set(Client.objects.filter(email__in=emails).values_list("email", flat=True))
    Client.objects.bulk_create(
        [
            Client(name=e.split("@")[0], email=e, advisor=advisor, base_currency="EUR")
            for e in emails
            if e not in existing
        ],
        batch_size=5000,
    )
    clients = Client.objects.filter(email__in=emails)
    Portfolio.objects.bulk_create(
        [
            Portfolio(client_id=pk, name="Main", base_currency="EUR", opened_on=datetime.date(2020, 1, 1))
            for pk in clients.filter(portfolios__isnull=True).values_list("pk", flat=True)
        ],
        batch_size=5000,
    )
    return {
        email: (client_id, portfolio_id)
        for email, client_id, portfolio_id in clients.values_list("email", "id", "portfolios__id")
    }


def generate(path: Path, rows: int, emails: list[str]) -> None:
    """Date-ordered rows; each client alternates deposits of 1,000 and withdrawals of 400, so none overdraws.
    Half the rows carry a reference, half rely on the row hash; a few are legitimate same-day duplicates."""
    start = datetime.date(2020, 1, 1)
    per_day = max(rows // 1500, 1)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["client", "kind", "amount", "currency", "date", "reference", "notes"])
        for n in range(rows):
            visit = n // len(emails)
            kind = "deposit" if visit % 2 == 0 else "withdrawal"
            amount = "1000.00" if kind == "deposit" else "400.00"
            date = start + datetime.timedelta(days=n // per_day)
            reference = f"BANK-{n:08d}" if n % 2 == 0 else ""
            writer.writerow([emails[n % len(emails)], kind, amount, "EUR", date.isoformat(), reference, "bench"])


def ceiling_file(source: Path, target: Path, client_ids: dict[str, tuple[int, int]]) -> None:
    """The same rows as COPY-ready CSV: client and portfolio ids resolved, every column of the insert filled in."""
    now = datetime.datetime.now(datetime.UTC).isoformat()
    with source.open(newline="", encoding="utf-8") as src, target.open("w", newline="", encoding="utf-8") as out:
        reader = csv.reader(src)
        next(reader)
        writer = csv.writer(out)
        for line, (email, kind, amount, currency, date, reference, notes) in enumerate(reader, start=2):
            key = "" if reference else hashlib.sha256(f"{line}".encode()).hexdigest()[:40] + ":1"
            writer.writerow([*client_ids[email], kind, amount, currency, date, notes, reference, key, now, now])


def empty_ledger() -> None:
    from django.db import connection

    from holdings.models import Allocation
    from ledger.models import Transaction

    # The allocations go with the ledger: each trade points at its settlement.
    tables = (Allocation._meta.db_table, Transaction._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
            for table in tables:
                cursor.execute(f"VACUUM ANALYZE {table}")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")


def measure_ours(path: Path, url: str, kind: str = "transactions") -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of the whole import process."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "portfolio_site.settings.dev", "DEBUG": "false"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "import", kind, str(path), "--quiet"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = process.stdout.read().decode(), process.stderr.read().decode()  # type: ignore[union-attr]
    if status != 0:
        sys.exit(f"the import failed:\n{out}\n{err}")
    print(f"  {out.strip()}")
    return seconds, usage.ru_maxrss * 1024


def measure_ceiling(path: Path) -> float:
    from django.db import connection

    from ledger.models import Transaction

    columns = (
        "client_id, portfolio_id, kind, amount, currency, date, notes, reference, import_key, created_at, updated_at"
    )
    started = time.perf_counter()
    with (
        connection.cursor() as cursor,
        path.open("rb") as handle,
        cursor.cursor.copy(f"COPY {Transaction._meta.db_table} ({columns}) FROM STDIN (FORMAT csv, NULL '')") as copy,
    ):
        while chunk := handle.read(1 << 20):
            copy.write(chunk)
    return time.perf_counter() - started


def measure_orm(path: Path, client_ids: dict[str, tuple[int, int]]) -> float:
    from django.db import transaction
    from django.utils import timezone

    from ledger.models import Transaction

    started = time.perf_counter()
    batch: list[Transaction] = []
    now = timezone.now()
    with transaction.atomic(), path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for line, (email, kind, amount, currency, date, reference, notes) in enumerate(reader, start=2):
            batch.append(
                Transaction(
                    client_id=client_ids[email][0],
                    portfolio_id=client_ids[email][1],
                    kind=kind,
                    amount=Decimal(amount),
                    currency=currency,
                    date=datetime.date.fromisoformat(date),
                    reference=reference or None,
                    import_key=None if reference else f"{line}",
                    notes=notes,
                    created_at=now,
                    updated_at=now,
                )
            )
            if len(batch) == 5000:
                Transaction.objects.bulk_create(batch)
                batch.clear()
        Transaction.objects.bulk_create(batch)
    return time.perf_counter() - started


# --- Allocations -------------------------------------------------------------------------------------------------

ASSETS_PER_PORTFOLIO = 20  # the lines a portfolio trades: few per portfolio, as in life
BENCH_EXCHANGE = "XBEN"


def ensure_assets(count: int) -> list[tuple[str, str]]:
    """The bench assets (two in three quoted in EUR, the others in USD): their tickers and currencies."""
    from holdings.models import Asset

    wanted = [(f"BENCH{n:04d}", "EUR" if n % 3 else "USD") for n in range(count)]
    existing = set(Asset.objects.filter(exchange=BENCH_EXCHANGE).values_list("ticker", flat=True))
    Asset.objects.bulk_create(
        [
            Asset(ticker=ticker, exchange=BENCH_EXCHANGE, name=f"Bench asset {ticker}", currency=currency)
            for ticker, currency in wanted
            if ticker not in existing
        ],
        batch_size=5000,
    )
    return wanted


def deposit_cash(client_ids: dict[str, tuple[int, int]]) -> None:
    """Enough cash in each bench portfolio, in both currencies, before the first trade."""
    from django.utils import timezone

    from ledger.models import Transaction

    now = timezone.now()
    Transaction.objects.bulk_create(
        [
            Transaction(
                client_id=client_id,
                portfolio_id=portfolio_id,
                kind="deposit",
                amount=Decimal("100000000"),
                currency=currency,
                date=datetime.date(2019, 12, 31),
                notes="bench funding",
                created_at=now,
                updated_at=now,
            )
            for client_id, portfolio_id in client_ids.values()
            for currency in ("EUR", "USD")
        ],
        batch_size=5000,
    )


def generate_allocations(path: Path, rows: int, emails: list[str], assets: list[tuple[str, str]]) -> None:
    """Date-ordered buys and sells: each client trades its own score of assets in turn, buying 10 units in one
    round and selling 5 in the next, so that no sell exceeds what is held and the deposits cover every buy."""
    start = datetime.date(2020, 1, 1)
    per_day = max(rows // 1500, 1)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["client", "ticker", "exchange", "kind", "quantity", "price", "fees", "date", "notes"])
        for n in range(rows):
            client, visit = n % len(emails), n // len(emails)
            slot, round_ = visit % ASSETS_PER_PORTFOLIO, visit // ASSETS_PER_PORTFOLIO
            ticker = assets[(client * 7 + slot * 13) % len(assets)][0]
            kind, quantity = ("buy", "10") if round_ % 2 == 0 else ("sell", "5")
            price = f"{10 + n % 90}.25"
            date = start + datetime.timedelta(days=n // per_day)
            writer.writerow(
                [emails[client], ticker, BENCH_EXCHANGE, kind, quantity, price, "1.50", date.isoformat(), "bench"]
            )


def main_allocations(args: argparse.Namespace) -> None:
    """Our allocations import against our transactions import, the same number of rows on the same database."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    print(
        f"database: {connection.vendor} ({name}), rows: {args.rows:,}, clients: {args.clients:,}, "
        f"assets: {args.assets:,}"
    )
    client_ids = ensure_clients(args.clients)
    emails = client_emails(args.clients)
    assets = ensure_assets(args.assets)
    with tempfile.TemporaryDirectory() as folder:
        trades, cash = Path(folder) / "allocations.csv", Path(folder) / "transactions.csv"
        generate_allocations(trades, args.rows, emails, assets)
        generate(cash, args.rows, emails)
        print(
            f"files: allocations {trades.stat().st_size / 1e6:.0f} MB, transactions {cash.stat().st_size / 1e6:.0f} MB"
        )

        empty_ledger()
        deposit_cash(client_ids)
        connection.close()  # the imports run in their own processes; hold no lock meanwhile
        seconds, rss = measure_ours(trades, args.database_url, "allocations")
        allocations_rate = args.rows / seconds
        print(f"allocations:  {allocations_rate:>10,.0f} rows/s  ({seconds:.1f} s, peak RSS {rss / 2**20:.0f} MB)")

        empty_ledger()
        connection.close()
        seconds, cash_rss = measure_ours(cash, args.database_url, "transactions")
        transactions_rate = args.rows / seconds
        print(
            f"transactions: {transactions_rate:>10,.0f} rows/s  ({seconds:.1f} s, peak RSS {cash_rss / 2**20:.0f} MB)"
        )
        empty_ledger()

    print(f"ratio: {allocations_rate / transactions_rate:.2f}")
    print(f"peak RSS: {rss / 2**20:.0f} MB")


def main() -> None:
    args = parse_args()
    ensure_database(args.database_url)
    setup_django(args.database_url)
    if args.kind == "allocations":
        main_allocations(args)
        return
    from django.db import connection

    name = connection.settings_dict["NAME"]
    print(f"database: {connection.vendor} ({name}), rows: {args.rows:,}, clients: {args.clients:,}")
    client_ids = ensure_clients(args.clients)
    with tempfile.TemporaryDirectory() as folder:
        source, resolved = Path(folder) / "transactions.csv", Path(folder) / "resolved.csv"
        generate(source, args.rows, client_emails(args.clients))
        print(f"file: {source.stat().st_size / 1e6:.0f} MB")

        empty_ledger()
        connection.close()  # the import runs in its own process; hold no lock on the table meanwhile
        ours, rss = measure_ours(source, args.database_url)
        ours_rate = args.rows / ours
        print(f"ours:    {ours_rate:>10,.0f} rows/s  ({ours:.1f} s, peak RSS {rss / 2**20:.0f} MB)")

        ceiling_rate = None
        if connection.vendor == "postgresql":
            ceiling_file(source, resolved, client_ids)
            empty_ledger()
            ceiling = measure_ceiling(resolved)
            ceiling_rate = args.rows / ceiling
            print(f"ceiling: {ceiling_rate:>10,.0f} rows/s  ({ceiling:.1f} s, COPY into the indexed table)")

        if not args.skip_orm:
            empty_ledger()
            orm = measure_orm(source, client_ids)
            print(f"orm:     {args.rows / orm:>10,.0f} rows/s  ({orm:.1f} s, bulk_create of 5,000-row batches)")
        empty_ledger()

    if ceiling_rate is not None:
        print(f"ratio: {ours_rate / ceiling_rate:.2f}")
    print(f"peak RSS: {rss / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
