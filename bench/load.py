#!/usr/bin/env python
"""Load test (issue 21): gunicorn on loopback, driven for a fixed time by concurrent workers mixing authenticated
reads and writes through the API, once on a small book and once with 1,000,000 ledger transactions.

The driver builds a scratch PostgreSQL database of its own (`load_<pid>`, dropped at the end, on failure and on
Ctrl-C too), starts gunicorn (production settings: PostgreSQL, the cache on Redis, DEBUG off; TLS redirection off
because the driver speaks plain HTTP on loopback) on a free loopback port, logs in three advisors and an operations
user through `/api/v1/auth/login/`, and for --seconds runs --workers threads, each with its own HTTP connection
(httpx: the threads are simpler than an event loop for a blocking Django server, and locust would bring gevent
for what 50 lines do here). Each request is one of, at random:

  reads    an advisor's transactions (numbered page with a kind filter, cursor page, date range), allocations,
           clients, a client's balances, a portfolio's valuation
  writes   a deposit, or a withdrawal no larger than the cash the worker deposited first (never an overdraft:
           each worker writes only in portfolios of its own, created after the book so that they hold no trades)

Per phase it prints requests/s, p50, p99 and errors (anything but the expected status, or no answer), and each
operation's p50/p99; then the p99 ratio large ÷ small (target ≤ 2). Exits non-zero on any error.

    flock -s /tmp/machine.lock .venv/bin/python bench/load.py                  # 60 s per phase, 1,000,000 rows
    flock -s /tmp/machine.lock .venv/bin/python bench/load.py --smoke          # a few seconds, a tiny book
"""

import argparse
import base64
import contextlib
import datetime
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
ADVISORS = 20
PASSWORD = "load-test-password-" + secrets.token_hex(8)
OPERATIONS = "load-operations@example.com"
READERS = ("bench-advisor-0@example.com", "bench-advisor-1@example.com", "bench-advisor-2@example.com")
TARGET = 2.0
# Each operation and its weight in the mix: about a quarter of the requests write.
MIX = {
    "transactions page": 16,
    "transactions cursor": 12,
    "transactions dates": 8,
    "allocations page": 10,
    "clients": 8,
    "balances": 12,
    "valuation": 8,
    "deposit": 14,
    "withdrawal": 12,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each phase")
    parser.add_argument("--workers", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=3_000)
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--small", type=int, default=10_000, help="ledger transactions of the small book")
    parser.add_argument("--large", type=int, default=1_000_000, help="ledger transactions of the large book")
    parser.add_argument("--smoke", action="store_true", help="a few seconds on a tiny book (what the test runs)")
    parser.add_argument("--server", default=os.environ.get("LOAD_DATABASE_SERVER", DEFAULT_SERVER))
    parser.add_argument("--redis-url", default=os.environ.get("LOAD_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument(
        "--template",
        help="a migrated database to copy the scratch database from (it must have no connections), instead of "
        "migrating an empty one (what the test does with its own test database: half a minute saved)",
    )
    args = parser.parse_args()
    args.warm_up = 2.0
    if args.smoke:
        args.warm_up = 0.5
        args.seconds, args.workers, args.clients, args.assets = min(args.seconds, 2.0), 4, 60, 20
        args.small, args.large = 500, 2_000
    return args


# --- The scratch database and the book -------------------------------------------------------------------------


def setup_django(url: str, redis_url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["REDIS_URL"] = redis_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "portfolio_site.settings.dev"
    os.environ["DEBUG"] = "false"
    import django

    django.setup()
    import logging

    from django.core.management import call_command

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    began = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"database migrated in {time.perf_counter() - began:.0f} s")


def write_users() -> None:
    """Passwords for the readers (advisors of the bench firm) and an operations user who writes."""
    from django.contrib.auth.models import Group

    from accounts.models import User
    from accounts.roles import Role

    for email in READERS:
        user = User.objects.get(email=email)
        user.set_password(PASSWORD)
        user.save()
    writer = User.objects.create_user(email=OPERATIONS, password=PASSWORD, is_staff=True)
    writer.groups.add(Group.objects.get(name=Role.OPERATIONS.value))


def write_book(transactions: int, today: datetime.date, *, first: bool) -> None:
    """The firm (on the first call) and `transactions` more trades in the ledger, each with its allocation."""
    from django.db import connection

    from bench.book import write_firm, write_ledger
    from holdings.models import Allocation
    from ledger.models import Transaction

    first_day = today.replace(year=today.year - 5)
    if first:
        from bench.book import write_eur_rates
        from bench.daily_values_bench import weekdays

        write_firm(ARGS.clients, ARGS.assets, ADVISORS, first_day)
        write_eur_rates(weekdays(today - datetime.timedelta(days=10), today), random.Random(1))
        write_users()
    began = time.perf_counter()
    write_ledger(transactions, first_day=first_day, last_day=today - datetime.timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Transaction._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {Allocation._meta.db_table}")
        # Every other table too (the firm's clients and portfolios, the users), as autovacuum would have long since
        # done: left unanalysed, the planner takes an advisor's 150 clients for 2 and reads the ledger's date index
        # once per client (a 30-day range at a million rows: 131 ms instead of 4).
        cursor.execute("ANALYZE")
    total = Transaction.objects.count()
    print(f"book: {transactions:,} trades written in {time.perf_counter() - began:.0f} s; {total:,} transactions")


def writer_portfolios(count: int, phase: str) -> list[int]:
    """One fresh client with one portfolio per worker, advised by the first reader: no trade of the book touches
    them, so their cash is what the worker deposits."""
    from accounts.models import User
    from clients.models import Client, Portfolio

    advisor = User.objects.get(email=READERS[0])
    opened = TODAY - datetime.timedelta(days=30)
    ids = []
    for n in range(count):
        client = Client.objects.create(
            name=f"Load {phase} {n}", email=f"load-{phase}-{n}@example.com", advisor=advisor, base_currency="EUR"
        )
        portfolio = Portfolio.objects.create(
            client=client, name="Main", base_currency="EUR", opened_on=opened, history_changed_from=opened
        )
        ids.append(portfolio.pk)
    return ids


def reader_scope(email: str) -> tuple[list[int], list[int]]:
    """The active clients and their portfolios of an advisor (what their reads ask for)."""
    from clients.models import Client, Portfolio

    clients = list(Client.objects.filter(advisor__email=email, is_active=True).values_list("pk", flat=True)[:50])
    portfolios = list(Portfolio.objects.filter(client_id__in=clients).values_list("pk", flat=True))
    return clients, portfolios


# --- gunicorn --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(url: str, port: int, prefix: str) -> subprocess.Popen[bytes]:
    key = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portfolio_site.settings.production",
        "DEBUG": "false",
        "DATABASE_URL": url,
        "REDIS_URL": ARGS.redis_url,
        "CACHE_KEY_PREFIX": prefix,
        "SECRET_KEY": key,
        "JWT_SIGNING_KEY": secrets.token_urlsafe(48),
        "ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        # Plain HTTP on loopback: no load balancer in front to end TLS.
        "SECURE_SSL_REDIRECT": "false",
    }
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "portfolio_site.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(ARGS.gunicorn_workers),
        "--timeout",
        "60",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    PROCESSES.append(process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return process
        time.sleep(0.2)
    raise SystemExit("gunicorn did not start listening within 60 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """gunicorn and its workers (its own process group, started with it)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process in PROCESSES:
        PROCESSES.remove(process)


# --- The load --------------------------------------------------------------------------------------------------


@dataclass
class Phase:
    timings: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def login(base: str, email: str) -> str:
    import httpx

    response = httpx.post(f"{base}/api/v1/auth/login/", json={"email": email, "password": PASSWORD}, timeout=30)
    assert response.status_code == 200, (email, response.status_code, response.text[:300])
    return str(response.json()["access"])


def work(base: str, number: int, tokens: dict[str, str], scopes: dict[str, Any], own: int, until: float, phase: Phase):  # type: ignore[no-untyped-def]
    import httpx

    rng = random.Random(number)
    operations, weights = list(MIX), list(MIX.values())
    reader = READERS[number % len(READERS)]
    clients, portfolios = scopes[reader]
    read_headers = {"Authorization": f"Bearer {tokens[reader]}"}
    write_headers = {"Authorization": f"Bearer {tokens[OPERATIONS]}"}
    today = TODAY
    cash = Decimal(0)
    with httpx.Client(base_url=base, timeout=30) as http:
        while time.monotonic() < until:
            operation = rng.choices(operations, weights)[0]
            expected, method, body, headers = 200, "GET", None, read_headers
            if operation == "withdrawal" and cash < 10:
                operation = "deposit"
            if operation == "transactions page":
                kind = rng.choice(["buy", "sell"])
                path = f"/api/v1/transactions/?page_size=50&kind={kind}"
            elif operation == "transactions cursor":
                path = "/api/v1/transactions/?cursor=&page_size=50"
            elif operation == "transactions dates":
                start = today - datetime.timedelta(days=rng.randint(30, 1500))
                end = start + datetime.timedelta(days=30)
                path = f"/api/v1/transactions/?page_size=50&date_after={start}&date_before={end}"
            elif operation == "allocations page":
                path = "/api/v1/allocations/?page_size=50"
            elif operation == "clients":
                path = "/api/v1/clients/?page_size=50"
            elif operation == "balances":
                path = f"/api/v1/clients/{rng.choice(clients)}/balances/"
            elif operation == "valuation":
                path = f"/api/v1/portfolios/{rng.choice(portfolios)}/valuation/"
            else:
                expected, method, headers = 201, "POST", write_headers
                amount = Decimal(rng.randint(100, 1000)) if operation == "deposit" else (cash / 3).quantize(Decimal(1))
                body = {
                    "portfolio": own,
                    "kind": operation,
                    "amount": str(amount),
                    "currency": "EUR",
                    "date": str(today),
                }
                path = "/api/v1/transactions/"
            began = time.perf_counter()
            try:
                response = http.request(
                    method, path, json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())}
                )
                status, detail = response.status_code, response.text[:200]
            except httpx.HTTPError as failure:
                status, detail = 0, repr(failure)
            elapsed = time.perf_counter() - began
            with phase.lock:
                phase.timings[operation].append(elapsed)
                if status != expected:
                    phase.errors.append(f"{operation} {path}: {status} {detail}")
            if status == expected and method == "POST":
                cash += amount if operation == "deposit" else -amount


def run_phase(name: str, url: str) -> dict[str, float]:
    from django.db import connections

    writers = writer_portfolios(ARGS.workers, name)
    scopes = {email: reader_scope(email) for email in READERS}
    connections.close_all()
    port = free_port()
    process = start_gunicorn(url, port, f"load-{os.getpid()}-{name}")
    base = f"http://127.0.0.1:{port}"
    try:
        tokens = {email: login(base, email) for email in (*READERS, OPERATIONS)}
        phase = Phase()
        # A short warm-up (each gunicorn worker's first requests import and connect), not counted.
        warm = Phase()
        threads = [
            threading.Thread(
                target=work,
                args=(base, n, tokens, scopes, writers[n], time.monotonic() + ARGS.warm_up, warm),
                daemon=True,  # Ctrl-C ends the run without waiting for them
            )
            for n in range(ARGS.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        began = time.monotonic()
        until = began + ARGS.seconds
        threads = [
            threading.Thread(target=work, args=(base, n, tokens, scopes, writers[n], until, phase), daemon=True)
            for n in range(ARGS.workers)
        ]
        for thread in threads:
            thread.start()
        load = os.getloadavg()[0]
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
    finally:
        stop(process)
    phase.errors[:0] = [f"(warm-up) {error}" for error in warm.errors]
    return report(name, phase, elapsed, load)


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(name: str, phase: Phase, elapsed: float, load: float) -> dict[str, float]:
    every = [t for timings in phase.timings.values() for t in timings]
    figures = {
        "rps": len(every) / elapsed,
        "p50": percentile(every, 50) * 1000,
        "p99": percentile(every, 99) * 1000,
        "errors": len(phase.errors),
    }
    print(
        f"{name}: {len(every)} requests in {elapsed:.1f} s, {figures['rps']:.1f} requests/s, "
        f"p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, errors {len(phase.errors)} "
        f"(load average {load:.2f} during)"
    )
    for operation in MIX:
        timings = phase.timings.get(operation, [])
        if timings:
            print(
                f"  {operation:<20} {len(timings):>6}  p50 {percentile(timings, 50) * 1000:7.1f} ms"
                f"  p99 {percentile(timings, 99) * 1000:7.1f} ms"
            )
    for error in phase.errors[:10]:
        print(f"  error: {error}")
    return figures


# --- Clean-up --------------------------------------------------------------------------------------------------

PROCESSES: list[subprocess.Popen[bytes]] = []
ARGS: argparse.Namespace
TODAY: datetime.date


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{ARGS.server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def forget_cache() -> None:
    """The phases' cache keys in the shared Redis database (each phase had a prefix of its own)."""
    import redis

    with contextlib.suppress(redis.RedisError):
        server = redis.Redis.from_url(ARGS.redis_url)
        for key in server.scan_iter(match=f"load-{os.getpid()}-*", count=1000):
            server.delete(key)


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    global ARGS
    ARGS = parse_args()
    signal.signal(signal.SIGTERM, interrupted)
    # Ctrl-C too, even when started in the background by a shell that ignores SIGINT for its background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    name = f"load_{os.getpid()}"
    url = f"{ARGS.server}/{name}"
    import psycopg

    with psycopg.connect(f"{ARGS.server}/postgres", autocommit=True) as conn:
        template = f' TEMPLATE "{ARGS.template}"' if ARGS.template else ""
        conn.execute(f'CREATE DATABASE "{name}"{template}')
    try:
        setup_django(url, ARGS.redis_url)
        from django.db import connection
        from django.utils import timezone

        global TODAY
        today = TODAY = timezone.localdate()
        print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        write_book(ARGS.small, today, first=True)
        small = run_phase("small", url)
        write_book(ARGS.large - ARGS.small, today, first=False)
        large = run_phase("large", url)
        connection.close()
        ratio = large["p99"] / small["p99"]
        met = "met" if ratio <= TARGET else "NOT met"
        print(f"p99 ratio large / small: {ratio:.2f} (target ≤ {TARGET}: {met})")
        errors = small["errors"] + large["errors"]
        print(f"errors: {errors:.0f}")
        return 1 if errors else 0
    finally:
        for process in list(PROCESSES):
            stop(process)
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        drop_database(name)
        forget_cache()


if __name__ == "__main__":
    sys.exit(main())
