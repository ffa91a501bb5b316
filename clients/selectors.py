"""Reads of clients and portfolios with a meaning of their own."""

import functools
from types import SimpleNamespace
from typing import Any

from django.db import connection

from .models import Client, Portfolio
from .scope import ClientScope

# What `visible_portfolio_header` loads: the fields a report of a portfolio reads, in the model's field order.
# Integers and text only: `from_db` takes the values as the driver gives them, without the ORM's converters.
HEADER_FIELDS = ("id", "client_id", "base_currency", "data_version")


def visible_portfolio_header(user: Any, pk: int) -> Portfolio | None:
    """Portfolio `pk` with only `HEADER_FIELDS` loaded (the others deferred, as `.only()` leaves them), or None when
    there is none or `user` may not see it: `ClientScope.allows` on its client's advisor, read in the same query.

    The lookup that opens every cached report (`holdings.valuation_api.CachedReportView`): one query by primary
    key, written out because compiling it through the ORM took longer than the database took to answer it, on
    the path of a cached answer that costs two or three milliseconds in all."""
    low, high = connection.ops.integer_field_range(Portfolio._meta.pk.get_internal_type())  # type: ignore[union-attr]
    if not low <= pk <= high:
        return None  # no row has such a key, and SQLite would refuse the parameter (a 500, not a 404)
    with connection.cursor() as cursor:
        cursor.execute(_header_sql(), [pk])
        row = cursor.fetchone()
    if row is None or not ClientScope.of(user).allows(SimpleNamespace(advisor_id=row[-1])):
        return None
    return Portfolio.from_db(connection.alias, list(HEADER_FIELDS), row[:-1])


@functools.cache
def _header_sql() -> str:
    """`visible_portfolio_header`'s query, naming tables and columns as the models do."""
    quote = connection.ops.quote_name
    portfolio = {field.attname: quote(field.column) for field in Portfolio._meta.concrete_fields if field.column}
    client = {field.attname: quote(field.column) for field in Client._meta.concrete_fields if field.column}
    columns = ", ".join(f"p.{portfolio[name]}" for name in HEADER_FIELDS)
    return (
        f"SELECT {columns}, c.{client['advisor_id']} "
        f"FROM {quote(Portfolio._meta.db_table)} p JOIN {quote(Client._meta.db_table)} c "
        f"ON c.{client['id']} = p.{portfolio['client_id']} WHERE p.{portfolio['id']} = %s"
    )
