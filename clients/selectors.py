"""Reads of clients and portfolios with a meaning of their own."""

import functools
from typing import Any

from django.db import connections

from .models import Client, Portfolio
from .scope import ClientScope

# What `visible_portfolio_header` loads: the fields a report of a portfolio reads, in the model's field order.
# Integers and text only: `from_db` takes the values as the driver gives them, without the ORM's converters.
HEADER_FIELDS = ("id", "client_id", "base_currency", "data_version")
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


def visible_portfolio_header(user: Any, pk: int, *, using: str = "default") -> Portfolio | None:
    """Portfolio `pk` with only `HEADER_FIELDS` loaded (the others deferred, as `.only()` leaves them), or None when
    there is none or `user` may not see it: `ClientScope.allows` on its client's advisor, read in the same query.

    The lookup that opens every cached report (`holdings.valuation_api.CachedReportView`): one query by primary
    key, written out because compiling it through the ORM took longer than the database took to answer it, on
    the path of a cached answer that costs two or three milliseconds in all."""
    if not BIGINT_MIN <= pk <= BIGINT_MAX:
        return None  # no row has such a key, and SQLite would refuse the parameter (a 500, not a 404)
    with connections[using].cursor() as cursor:
        cursor.execute(_header_sql(using), [pk])
        row = cursor.fetchone()
    if row is None or not ClientScope.of(user).allows(_Advised(row[-1])):
        return None
    return Portfolio.from_db(using, list(HEADER_FIELDS), row[:-1])


class _Advised:
    """What `ClientScope.allows` reads of a client."""

    def __init__(self, advisor_id: int | None) -> None:
        self.advisor_id = advisor_id


@functools.cache
def _header_sql(alias: str) -> str:
    """`visible_portfolio_header`'s query, naming tables and columns as the models do."""
    quote = connections[alias].ops.quote_name
    portfolio = {field.attname: quote(field.column) for field in Portfolio._meta.concrete_fields if field.column}
    client = {field.attname: quote(field.column) for field in Client._meta.concrete_fields if field.column}
    columns = ", ".join(f"p.{portfolio[name]}" for name in HEADER_FIELDS)
    return (
        f"SELECT {columns}, c.{client['advisor_id']} "
        f"FROM {quote(Portfolio._meta.db_table)} p JOIN {quote(Client._meta.db_table)} c "
        f"ON c.{client['id']} = p.{portfolio['client_id']} WHERE p.{portfolio['id']} = %s"
    )
