#!/usr/bin/env python
"""Benchmark of `manage.py import transactions` against the database's own ceiling.

Generates a synthetic transactions CSV (N rows for a few thousand clients), then measures on one database,
each time into an empty ledger table with the same indexes and constraints:

  ours     the whole `manage.py import transactions FILE --quiet` process (parsing and validation included)
  ceiling  the same rows with client and portfolio ids already resolved, streamed as CSV bytes through one
           COPY ledger_transaction (...) FROM STDIN (FORMAT csv)   [PostgreSQL only]
  orm      Django's bulk_create of the same rows, 5,000 at a time

and prints rows/s of each, `ratio: ours / ceiling` on a line of its own, and the import's peak RSS.

    .venv/bin/python bench/import_bench.py                      # 1,000,000 rows
    .venv/bin/python bench/import_bench.py --rows 100000
    .venv/bin/python bench/import_bench.py --database-url postgres://postgres@127.0.0.1:5432/portfolio_bench

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

    from ledger.models import Transaction

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {Transaction._meta.db_table} RESTART IDENTITY CASCADE")
            cursor.execute(f"VACUUM ANALYZE {Transaction._meta.db_table}")
        else:
            cursor.execute(f"DELETE FROM {Transaction._meta.db_table}")


def measure_ours(path: Path, url: str) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of the whole import process."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "portfolio_site.settings.dev", "DEBUG": "false"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "import", "transactions", str(path), "--quiet"],
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


def main() -> None:
    args = parse_args()
    ensure_database(args.database_url)
    setup_django(args.database_url)
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
