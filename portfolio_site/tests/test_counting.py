import time

import pytest
from django.core.paginator import EmptyPage
from django.db import connection

from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site import counting
from portfolio_site.counting import CountedPaginator, RowCount, count_rows
from portfolio_site.testing import forget_row_estimates

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_row_estimates_left_by_other_tests() -> None:
    forget_row_estimates(Transaction)


def test_a_list_within_the_bound_is_counted_exactly():
    TransactionFactory.create_batch(3)

    assert count_rows(Transaction.objects.all(), bound=3) == RowCount(3, exact=True)


def test_a_filtered_list_past_the_bound_is_only_known_to_be_more():
    rows = TransactionFactory.create_batch(4)

    counted = count_rows(Transaction.objects.filter(pk__in=[t.pk for t in rows]), bound=2)

    assert counted == RowCount(2, exact=False)


def test_a_distinct_list_counts_its_distinct_rows():
    TransactionFactory.create_batch(3)
    TransactionFactory.create_batch(2, kind=Transaction.Kind.WITHDRAWAL, amount=1)

    assert count_rows(Transaction.objects.distinct(), bound=10) == RowCount(5, exact=True)
    assert count_rows(Transaction.objects.values("kind").distinct(), bound=10) == RowCount(2, exact=True)
    assert count_rows(Transaction.objects.values("kind").distinct(), bound=1) == RowCount(1, exact=False)


def test_a_past_the_bound_count_reads_at_most_bound_plus_one_rows(django_assert_num_queries):
    TransactionFactory.create_batch(4)

    with django_assert_num_queries(1) as captured:
        count_rows(Transaction.objects.filter(amount__gt=0), bound=2)

    assert "LIMIT 3" in captured.captured_queries[0]["sql"]


@pytest.mark.postgres
def test_an_unfiltered_large_table_is_counted_by_the_planners_estimate(django_assert_num_queries):
    TransactionFactory.create_batch(5)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Transaction._meta.db_table}")

    with django_assert_num_queries(1) as captured:
        counted = count_rows(Transaction.objects.all(), bound=2)

    assert counted == RowCount(5, exact=False, estimated=True)
    assert "reltuples" in captured.captured_queries[0]["sql"]


@pytest.mark.postgres
def test_a_small_table_is_counted_exactly_even_when_the_planner_knows_it():
    TransactionFactory.create_batch(2)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Transaction._meta.db_table}")

    assert count_rows(Transaction.objects.all(), bound=10) == RowCount(2, exact=True)


def test_a_page_past_an_inexact_count_is_served_and_holds_the_rows_there():
    rows = TransactionFactory.create_batch(5)
    paginator = CountedPaginator(Transaction.objects.filter(amount__gt=0).order_by("pk"), per_page=2)
    paginator.bound = 2

    assert (paginator.count, paginator.count_exact) == (2, False)
    assert list(paginator.page(3).object_list) == [rows[4]]
    assert list(paginator.page(4).object_list) == []


def test_a_page_past_an_exact_count_is_refused():
    TransactionFactory.create_batch(2)
    paginator = CountedPaginator(Transaction.objects.order_by("pk"), per_page=2)

    with pytest.raises(EmptyPage):
        paginator.page(2)


def test_page_zero_is_refused_even_past_an_inexact_count():
    TransactionFactory.create_batch(3)
    paginator = CountedPaginator(Transaction.objects.filter(amount__gt=0).order_by("pk"), per_page=1)
    paginator.bound = 1

    with pytest.raises(EmptyPage):
        paginator.page(0)


def test_a_filter_that_matches_nothing_counts_zero_without_a_query(django_assert_num_queries):
    TransactionFactory()

    with django_assert_num_queries(0):
        assert count_rows(Transaction.objects.filter(pk__in=[])) == RowCount(0, exact=True)


def test_a_bounded_count_reads_no_column_so_an_index_of_the_filter_can_answer_it(django_assert_num_queries):
    TransactionFactory.create_batch(3)

    with django_assert_num_queries(1) as captured:
        count_rows(Transaction.objects.filter(amount__gt=0), bound=2)

    assert 'SELECT 1 AS "counted_row" FROM' in captured.captured_queries[0]["sql"]


@pytest.mark.postgres
def test_the_planners_estimate_is_read_once_a_minute(django_assert_num_queries, monkeypatch):
    TransactionFactory.create_batch(5)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Transaction._meta.db_table}")
    count_rows(Transaction.objects.all(), bound=2)

    with django_assert_num_queries(0):
        assert count_rows(Transaction.objects.all(), bound=2) == RowCount(5, exact=False, estimated=True)

    later = time.monotonic() + counting.ESTIMATE_SECONDS + 1
    monkeypatch.setattr(counting.time, "monotonic", lambda: later)
    with django_assert_num_queries(1):
        count_rows(Transaction.objects.all(), bound=2)
