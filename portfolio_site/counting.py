"""Counting the rows of a list without reading a million of them: the one rule the admin's changelists and the
API's page-number pages share.

An exact COUNT(*) reads every row that matches (on PostgreSQL, the whole table or index for an unfiltered list):
at a million ledger rows it costs more than the page itself. So a list is counted

- unfiltered, on a table the planner knows to be large: by the planner's own estimate (`pg_class.reltuples`,
  kept current by autovacuum's ANALYZE), which costs one catalogue lookup a minute;
- otherwise (filtered, scoped to an advisor's clients, small tables, SQLite): exactly, but reading at most
  `bound + 1` rows, so that a count beyond the bound is known only to be "more than `bound`".

Either way the count says whether it is exact; a page past an inexact count is served (empty if there is nothing
there) rather than refused, since the count cannot prove it does not exist.
"""

import time
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.core.paginator import EmptyPage, Page, Paginator
from django.db import connections
from django.db.models import QuerySet, Value
from django.utils.functional import cached_property

# Rows counted exactly before a count says "more than": ten pages of the admin's hundred rows. What a bounded count
# costs grows with the bound divided by the share of the table that matches: an advisor's 5% of a million-row
# ledger, counted to 10,000, took 35 ms (more than the page); to 1,000, 3 ms.
DEFAULT_BOUND = 1_000


@dataclass(frozen=True)
class RowCount:
    """How many rows a list has: `value` exactly when `exact`; else about that many when `estimated` (the
    planner's estimate), or more than that many (the bound)."""

    value: int
    exact: bool
    estimated: bool = False


# How long a process reuses a table's estimate. PostgreSQL itself renews it only when autovacuum (or ANALYZE) analyses
# the table, after a good share of it has changed: re-reading it on every page buys nothing for its query.
ESTIMATE_SECONDS = 60.0
_estimates: dict[tuple[str, str], tuple[int | None, float]] = {}


def planner_estimate(queryset: QuerySet[Any]) -> int | None:
    """The planner's estimate of the rows of the queryset's table, on PostgreSQL once the table has been analysed;
    None elsewhere or before (reltuples is -1 on a table never analysed, 0 on one analysed empty). Read at most once
    a minute per table and process."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    table = queryset.model._meta.db_table
    known = _estimates.get((queryset.db, table))
    if known is not None and known[1] > time.monotonic():
        return known[0]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)", [connection.ops.quote_name(table)]
        )
        row = cursor.fetchone()
    estimate = row[0] if row is not None and row[0] > 0 else None
    _estimates[(queryset.db, table)] = (estimate, time.monotonic() + ESTIMATE_SECONDS)
    return estimate


def forget_estimates() -> None:
    """Drops the estimates this process holds (for tests that analyse a table and read its estimate at once)."""
    _estimates.clear()


def is_unfiltered(queryset: QuerySet[Any]) -> bool:
    """Whether the queryset is every row of its table, once each (joins that cannot repeat a row aside)."""
    query = queryset.query
    return not (query.where or query.distinct or query.combinator or query.group_by or query.is_sliced)


def count_rows(queryset: QuerySet[Any], *, bound: int = DEFAULT_BOUND) -> RowCount:
    """The rows of `queryset`, counted as the module says: estimated when unfiltered on a large table, else exact
    up to `bound`."""
    if is_unfiltered(queryset):
        estimate = planner_estimate(queryset)
        if estimate is not None and estimate > bound:
            return RowCount(estimate, exact=False, estimated=True)
    # A constant for each of the first bound + 1 rows, unordered: the database stops as soon as it has them, and,
    # reading no column, it can count them from an index of the filtered columns alone (an index-only scan) instead
    # of visiting each row for its primary key. Written out, because QuerySet.count() would drop the constant as
    # unused and select nothing (which PostgreSQL takes, SQLite refuses) or the primary key.
    first = queryset.order_by().annotate(counted_row=Value(1)).values("counted_row")[: bound + 1]
    if queryset.query.distinct:
        # Distinct rows are told apart by their columns: a constant alone would make them all one row.
        first = queryset.order_by()[: bound + 1]
    try:
        sql, params = first.query.get_compiler(queryset.db).as_sql()
    except EmptyResultSet:  # a filter that can match nothing (`pk__in=[]`): Django asks the database nothing
        return RowCount(0, exact=True)
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) counted", params)
        (counted,) = cursor.fetchone()
    return RowCount(min(counted, bound), exact=counted <= bound)


class CountedPaginator(Paginator):
    """A Paginator whose count is `count_rows`'s: `count_exact` says whether `count` is exact, and a page number
    past an inexact count is served rather than refused (empty when nothing is there)."""

    bound = DEFAULT_BOUND

    @cached_property
    def row_count(self) -> RowCount:
        if isinstance(self.object_list, QuerySet):
            return count_rows(self.object_list, bound=self.bound)
        return RowCount(len(self.object_list), exact=True)

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        return self.row_count.value

    @property
    def count_exact(self) -> bool:
        return self.row_count.exact

    @property
    def count_estimated(self) -> bool:
        return self.row_count.estimated

    def validate_number(self, number: Any) -> int:
        if self.count_exact:
            return super().validate_number(number)
        try:
            return super().validate_number(number)
        except EmptyPage:
            # Below 1 is still refused; past the estimate or the bound, the rows may well be there.
            if int(number) < 1:
                raise
            return int(number)

    def page(self, number: Any) -> Page:
        if self.count_exact:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        # Paginator's own hook for the page object (missing from django-stubs).
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)  # type: ignore[attr-defined,no-any-return]
