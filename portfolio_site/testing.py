"""Helpers for the tests of every app (fixtures live in the root conftest.py)."""

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

from django import test
from django.contrib.messages import get_messages

# A django-redis cache pointing at a closed port: what the app sees while Redis is down.
REDIS_DOWN = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "IGNORE_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 0.1,
            "SOCKET_TIMEOUT": 0.1,
        },
    }
}


def admin_messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def changelist_ids(response: Any) -> set[int]:
    return {row.pk for row in response.context["cl"].result_list}


def page_queries(client: test.Client, count_queries: Callable[[Callable[[], Any]], int], url: str) -> int:
    """Queries to load `url` with a 200."""

    def load() -> None:
        assert client.get(url).status_code == 200

    return count_queries(load)


def run_at_once(work: Callable[[int], Any], workers: int, *, timeout: float = 30) -> None:
    """Runs `work(n)` in `workers` threads released together, each closing its own database connection:
    what several requests arriving at once look like (meaningful on PostgreSQL, where they really overlap).

    Fails if a worker is still running after `timeout` seconds (a lock wait no one will end: the deadlock a
    test is there to rule out) or if a worker raised: `work` records the outcomes it expects, anything else
    is a failure of the test, not a message lost in a thread."""
    import threading

    from django.db import connection

    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    hanging = sum(thread.is_alive() for thread in threads)
    assert not hanging, f"{hanging} of {workers} workers still running after {timeout} s"
    if errors:
        raise errors[0]


# --- Which rule of the database refused a row ----------------------------------------------------

# What `refused_by` names a PostgreSQL refusal of a value longer than its varchar column: no constraint of ours,
# the column's own type (SQLite has none, and leaves such a value to our check constraints).
VALUE_TOO_LONG = "value too long for its column"


def portfolio_client_agreement(table: str) -> str:
    """The name of the rule that a row's client is its portfolio's client (clients.migration_ops): a foreign key
    on PostgreSQL, triggers raising this name on SQLite."""
    from django.db import connection

    return f"{table}_portfolio_client_fk" if connection.vendor == "postgresql" else f"{table}_portfolio_client"


def _meta_constraint(name: str) -> tuple[Any, Any] | None:
    """(model, constraint) of the model constraint called `name`, if any model declares it."""
    from django.apps import apps

    for model in apps.get_models():
        for constraint in model._meta.constraints:
            if constraint.name == name:
                return model, constraint
    return None


def _sqlite_messages(name: str) -> set[str]:
    """The messages SQLite may give when the rule `name` refuses a row.

    SQLite names a CHECK constraint, and an index on expressions, but reports a UNIQUE one on columns by the
    columns it covers; a trigger's message is its own, and ours start with the rule's name. "table.column"
    stands for the UNIQUE of that column alone (a one-to-one field's)."""
    from django.db import models

    found = _meta_constraint(name)
    if found is None:
        return {f"UNIQUE constraint failed: {name}"} if "." in name else set()
    model, constraint = found
    if isinstance(constraint, models.CheckConstraint):
        return {f"CHECK constraint failed: {name}"}
    if constraint.fields:
        table = model._meta.db_table
        columns = ", ".join(f"{table}.{model._meta.get_field(field).column}" for field in constraint.fields)
        return {f"UNIQUE constraint failed: {columns}"}
    return {f"UNIQUE constraint failed: index '{name}'"}


def _postgresql_name(cause: Any) -> str:
    """The rule PostgreSQL says refused the row: the constraint's name ("table.column" for the UNIQUE of one
    column that no model constraint names, as `_sqlite_messages`)."""
    from django.db import connection

    diag = cause.diag
    if diag.sqlstate == "22001":
        return VALUE_TOO_LONG
    if diag.sqlstate == "23505" and _meta_constraint(diag.constraint_name) is None:
        with connection.cursor() as cursor:
            constraints: dict[str, Any] = connection.introspection.get_constraints(cursor, diag.table_name)
        columns: list[str] = (constraints.get(str(diag.constraint_name)) or {}).get("columns") or []
        if len(columns) == 1:
            return f"{diag.table_name}.{columns[0]}"
    return str(diag.constraint_name)


@contextlib.contextmanager
def refused_by(*names: str) -> Iterator[None]:
    """Asserts that the block's write is refused by the database's rule `name` (a model constraint's name, a
    name from a migration, "table.column" for a column's own UNIQUE, or VALUE_TOO_LONG), not by any other;
    several names for a row that breaks several rules (which one a database reports first is its own choice).

    A bare `pytest.raises(IntegrityError)` passes for the wrong reason as soon as a factory leaves some other
    column invalid; the rule's name is what proves the constraint under test exists and does its job. The
    block runs in a savepoint, so that the test goes on after the refusal."""
    import pytest
    from django.db import DataError, IntegrityError, connection, transaction

    with pytest.raises((IntegrityError, DataError)) as refusal, transaction.atomic():
        yield
    error = refusal.value
    if connection.vendor == "postgresql":
        refused = _postgresql_name(error.__cause__)
        assert refused in names, f"refused by {refused!r}, not by {' or '.join(names)}: {error}"
    else:
        message = str(error)
        expected = set().union(*(_sqlite_messages(name) for name in names))
        by_trigger = any(message.startswith(f"{name}:") for name in names)
        assert message in expected or by_trigger, f"refused by {message!r}, not by {' or '.join(names)}"


# --- Races made certain (PostgreSQL) -------------------------------------------------------------


def lock_waiters() -> int:
    """How many sessions of this database wait for a lock now, asked on a connection of its own: inside a
    transaction PostgreSQL shows pg_stat_activity as it was when the transaction first read it."""
    from django.db import connection

    raw = connection.get_new_connection(connection.get_connection_params())
    try:
        raw.autocommit = True
        with raw.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return int(cursor.fetchone()[0])
    finally:
        raw.close()


def wait_until(condition: Callable[[], bool], *, timeout: float = 5) -> bool:
    """Polls `condition` until it holds (True) or `timeout` seconds passed (False)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@contextlib.contextmanager
def rows_locked(model: Any, pks: list[int], *, release_when: Callable[[], bool], timeout: float = 5) -> Iterator[None]:
    """Holds FOR UPDATE locks on the rows, from a thread of its own, until `release_when()` holds (at most
    `timeout` seconds).

    Writers started meanwhile read what they read before taking their locks, then queue behind these: the
    widest window a race can have, made certain instead of left to the scheduler, so that a test of the race
    fails every time the code has one (and an xfail of it can be strict)."""
    import threading

    from django.db import connection, transaction

    locked = threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(model.objects.select_for_update().filter(pk__in=pks).order_by("pk"))
                locked.set()
                wait_until(release_when, timeout=timeout)
        finally:
            connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(timeout), "the rows could not be locked"
    try:
        yield
    finally:
        holder.join(timeout + 5)


def run_bench(script: str, scratch: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Runs `bench/<script>` at a small size against a PostgreSQL scratch database of its own, dropped first (one
    left by an older checkout may hold a migration history this one does not know) and named after the test
    database (suites run side by side never share one). The bench's output and exit code, for the test to read."""
    import os
    import sys

    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    server = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}"
    name = f"portfolio_bench_{database['NAME'].removeprefix('test_').removeprefix('portfolio_')}_{scratch}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return subprocess.run(
        [sys.executable, f"bench/{script}", *arguments, "--database-url", f"{server}/{name}"],
        cwd=settings.BASE_DIR,
        env={**os.environ, "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def forget_row_estimates(*models: type[Any]) -> None:
    """Analyses the models' tables while they are empty, so that PostgreSQL estimates them at no rows.

    ANALYZE writes its estimate outside the transaction a test rolls back, so a test that analyses a full table
    leaves its row count behind for the next; call this first where a test relies on there being no estimate
    (`portfolio_site.counting` trusts an estimate over its bound). Drops the estimates the process holds too."""
    from django.db import connection

    from portfolio_site.counting import forget_estimates

    forget_estimates()
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
