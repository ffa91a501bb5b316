#!/usr/bin/env python
"""Benchmark of the API's large lists (issue 15): a 100-row page of `/api/v1/transactions/` and of
`/api/v1/allocations/` with both tables at 1,000,000 rows, against the floor, through Django's test client (the
whole request: middleware, JWT authentication of a live login session, scoping, filters, pagination,
serialization, JSON).

The floor is a bare Django view the bench adds in a URLconf of its own (never in the product): the same 100 rows
(same ordering, same fields, the advisor's scope filter for the advisor, the same row-value position for a deep
page) as JSON from `.values()`, with no authentication, no count and no serializer. Printed per endpoint and role:

  page     the default page-number page (`?page_size=100`): a count (estimated or bounded) and the rows
  cursor   the first cursor page (`?cursor=&page_size=100`)
  deep     a cursor page half-way down the list (its token made as the `next` link would carry it), against a
           floor reading from the same position

each as the median of --repeats timed runs after one warm-up, the floor's and ours alternating run by run (so that
the machine's other work weighs on both alike), with its queries and the ratio floor ÷ ours (target ≥ 0.6).
Neither viewset caches its lists (asserted); every run still has a query string of its own, so that no cache could
answer it.

The book: a firm of --clients clients dealt round 20 advisors (two portfolios each, 200 assets), and --rows trades
over five years, each an allocation with its cash settlement (bench.book.write_firm, write_ledger): --rows rows in
each table, about 550 of them on each day. The advisor is bench-advisor-0, who advises one client in 20.

    flock -x /tmp/machine.lock .venv/bin/python bench/api_bench.py                      # 1,000,000 rows
    flock -x /tmp/machine.lock .venv/bin/python bench/api_bench.py --reuse              # the book of a previous run
    flock -x /tmp/machine.lock .venv/bin/python bench/api_bench.py --rows 10000 --clients 300

The database named by --database-url is created if missing and its clients, holdings and ledger are emptied:
never point it at data you want to keep.
"""

import argparse
import datetime
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.daily_values_bench import setup_django  # noqa: E402  (the same scratch database set-up)

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/portfolio_bench_api"
ADVISORS = 20
SUPERUSER = "bench-api-admin@example.com"
ADVISOR = "bench-advisor-0@example.com"
TARGET = 0.6

# What the floor returns of each list: the serializer's fields, read straight from the columns.
FLOOR_FIELDS = {
    "transactions": (
        "id",
        "client_id",
        "portfolio_id",
        "kind",
        "amount",
        "currency",
        "date",
        "notes",
        "reference",
        "created_by_id",
        "reverses_id",
        "reversed_by",
        "counterpart_id",
        "created_at",
    ),
    "allocations": (
        "id",
        "client_id",
        "portfolio_id",
        "asset_id",
        "kind",
        "quantity",
        "price",
        "fees",
        "taxes",
        "asset__currency",
        "date",
        "notes",
        "settlement_id",
        "counterpart_id",
        "cash_in_lieu_of_id",
        "created_at",
        "updated_at",
    ),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=3_000)
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1_000_000, help="trades written: rows in each table")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--reuse", action="store_true", help="keep the book of a previous run")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    return parser.parse_args()


def fill(args: argparse.Namespace, today: datetime.date) -> None:
    """The firm and its two large tables, written by the database itself, then vacuumed and analysed (as
    autovacuum would have long since done on a table that took years to grow)."""
    from django.db import connection

    from accounts.models import User
    from bench.book import write_firm, write_ledger
    from clients.models import Client, Portfolio
    from holdings.models import Allocation, Asset, FxRate, PortfolioDailyValue, PositionSnapshot, Price
    from ledger.models import Transaction

    with connection.cursor() as cursor:
        tables = [
            m._meta.db_table
            for m in (PortfolioDailyValue, PositionSnapshot, Allocation, Transaction, Price, FxRate, Asset)
        ]
        cursor.execute(f"TRUNCATE {', '.join(tables)}, {Portfolio._meta.db_table}, {Client._meta.db_table} CASCADE")
    User.objects.filter(email=SUPERUSER).delete()
    User.objects.create_user(email=SUPERUSER, password=None, is_staff=True, is_superuser=True)
    first_day = today.replace(year=today.year - 5)
    write_firm(args.clients, args.assets, ADVISORS, first_day)
    began = time.perf_counter()
    write_ledger(args.rows, first_day=first_day, last_day=today)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Transaction._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {Allocation._meta.db_table}")
    print(f"book: {args.rows:,} transactions and allocations written in {time.perf_counter() - began:.0f} s")


# --- The floor: a bare view, in the bench's own URLconf -----------------------------------------------------


def floor_queryset(name: str) -> Any:
    from django.db.models import F

    from holdings.models import Allocation
    from ledger.models import Transaction

    if name == "transactions":
        return Transaction.objects.annotate(reversed_by=F("reversal__id"))
    return Allocation.objects.all()


def floor_view(name: str) -> Callable[[Any], Any]:
    """The rows as `.values()` gives them, as JSON: `?advisor=` applies the advisor's scope, `?before=date,id` the
    position of a deep page; `?page_size=` the number of rows."""
    from django.db.models import F
    from django.db.models.fields.tuple_lookups import Tuple, TupleLessThan
    from django.http import JsonResponse

    def view(request: Any) -> Any:
        rows = floor_queryset(name)
        if advisor := request.GET.get("advisor"):
            rows = rows.filter(client__advisor_id=int(advisor))
        if before := request.GET.get("before"):
            day, pk = before.split(",")
            rows = rows.filter(TupleLessThan(Tuple(F("date"), F("id")), (datetime.date.fromisoformat(day), int(pk))))
        size = int(request.GET.get("page_size", 100))
        page = list(rows.order_by("-date", "-id").values(*FLOOR_FIELDS[name])[:size])
        return JsonResponse({"results": page})

    return view


def install_floor() -> None:
    """A URLconf of the bench's: the floor views, then the product's own URLs unchanged."""
    from django.conf import settings
    from django.urls import include, path

    urls = types.ModuleType("bench_api_urls")
    urls.urlpatterns = [  # type: ignore[attr-defined]
        *(path(f"floor/{name}/", floor_view(name)) for name in FLOOR_FIELDS),
        path("", include(settings.ROOT_URLCONF)),
    ]
    sys.modules["bench_api_urls"] = urls
    settings.ROOT_URLCONF = "bench_api_urls"


# --- Measuring -----------------------------------------------------------------------------------------------


def bearer(email: str) -> dict[str, str]:
    """The Authorization header of a real access token: a login session opened as the login endpoint opens one."""
    from accounts.models import User
    from accounts.services.events import ClientInfo
    from accounts.services.sessions import session_start

    _, tokens = session_start(user=User.objects.get(email=email), client=ClientInfo(ip="127.0.0.1", user_agent="bench"))
    assert tokens is not None
    return {"HTTP_AUTHORIZATION": f"Bearer {tokens.access}"}


class Timed:
    """GETs of one path, each with a query string of its own (no cache could answer it), timed one by one."""

    def __init__(self, client: Any, path: str, headers: dict[str, str]) -> None:
        self.client, self.path, self.headers = client, path, headers
        self.separator = "&" if "?" in path else "?"
        self.runs = 0
        self.timings: list[float] = []

    def get(self) -> int:
        self.runs += 1
        response = self.client.get(f"{self.path}{self.separator}bench_run={self.runs}", **self.headers)
        assert response.status_code == 200, (self.path, response.status_code, response.content[:300])
        return len(response.json()["results"])

    def timed(self) -> None:
        began = time.perf_counter()
        self.get()
        self.timings.append(time.perf_counter() - began)

    def queries_and_rows(self) -> tuple[int, int]:
        from django.db import connection

        executed: list[str] = []

        def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            executed.append(sql)
            return execute(sql, params, many, context)

        # An execute wrapper rather than the debug cursor: it counts whether or not the request reconnects.
        with connection.execute_wrapper(count):
            rows = self.get()
        return len(executed), rows


def timed_pair(client: Any, floor_path: str, our_path: str, headers: dict[str, str], repeats: int) -> list[Any]:
    """The floor's and our median seconds over `repeats` runs each, after a warm-up of both, with each one's
    queries and rows. The two alternate, run by run, so that whatever else the machine does in the meantime weighs
    on both alike rather than on whichever ran second."""
    floor, ours = Timed(client, floor_path, {}), Timed(client, our_path, headers)
    floor.get()
    ours.get()
    counted = [*floor.queries_and_rows(), *ours.queries_and_rows()]
    for _ in range(repeats):
        floor.timed()
        ours.timed()
    return [statistics.median(floor.timings), statistics.median(ours.timings), *counted]


def middle_position(name: str, advisor_id: int | None) -> tuple[datetime.date, int]:
    """(date, id) of the row half-way down the list (the advisor's list for the advisor)."""
    rows = floor_queryset(name)
    if advisor_id is not None:
        rows = rows.filter(client__advisor_id=advisor_id)
    count = rows.count()
    row = rows.order_by("-date", "-id").values_list("date", "id")[count // 2]
    return row[0], row[1]


def measure(args: argparse.Namespace) -> list[bool]:
    from django.test import Client

    from accounts.models import User
    from holdings.api import AllocationViewSet
    from ledger.api import TransactionViewSet
    from portfolio_site.api.pagination import KeysetPagination

    # Neither list is cached: every figure is the real work (the fresh query strings make sure of it anyway).
    assert getattr(TransactionViewSet, "cache_namespace", None) is None
    assert AllocationViewSet.cache_namespace is None
    client = Client()
    advisor_id = User.objects.get(email=ADVISOR).pk
    size = args.page_size
    met = []
    print(
        f"{'list':<13} {'role':<9} {'page':<7} {'floor ms':>9} {'ours ms':>8} {'ratio':>6}  queries (floor/ours)  rows"
    )
    for name in FLOOR_FIELDS:
        for role, email in (("superuser", SUPERUSER), ("advisor", ADVISOR)):
            headers = bearer(email)
            scope = f"&advisor={advisor_id}" if role == "advisor" else ""
            day, pk = middle_position(name, advisor_id if role == "advisor" else None)
            token = KeysetPagination().encode([day, pk])
            cases = {
                "page": (f"/floor/{name}/?page_size={size}{scope}", f"/api/v1/{name}/?page_size={size}"),
                "cursor": (f"/floor/{name}/?page_size={size}{scope}", f"/api/v1/{name}/?cursor=&page_size={size}"),
                "deep": (
                    f"/floor/{name}/?page_size={size}{scope}&before={day.isoformat()},{pk}",
                    f"/api/v1/{name}/?cursor={token}&page_size={size}",
                ),
            }
            for case, (floor_path, our_path) in cases.items():
                floor, ours, floor_queries, floor_rows, our_queries, our_rows = timed_pair(
                    client, floor_path, our_path, headers, args.repeats
                )
                assert floor_rows == our_rows == size, (name, role, case, floor_rows, our_rows)
                ratio = floor / ours
                met.append(ratio >= TARGET)
                print(
                    f"{name:<13} {role:<9} {case:<7} {floor * 1000:9.1f} {ours * 1000:8.1f} {ratio:6.2f}"
                    f"  {floor_queries:>7} / {our_queries:<11} {our_rows}"
                )
    return met


def main() -> None:
    args = parse_args()
    # The test client calls the views as "testserver"; the bench's own settings, not the environment's.
    os.environ["ALLOWED_HOSTS"] = "testserver"
    setup_django(args.database_url)
    from django.db import connection
    from django.utils import timezone

    if connection.vendor != "postgresql":
        sys.exit("api_bench needs PostgreSQL (the book is written by the database itself)")
    if not args.reuse:
        fill(args, timezone.localdate())
    install_floor()
    from holdings.models import Allocation
    from ledger.models import Transaction

    print(
        f"book: {Transaction.objects.count():,} transactions, {Allocation.objects.count():,} allocations; "
        f"{args.page_size}-row pages, median of {args.repeats} after a warm-up"
    )
    met = measure(args)
    print(f"ratio floor ÷ ours ≥ {TARGET}: {sum(met)} of {len(met)}")


if __name__ == "__main__":
    main()
