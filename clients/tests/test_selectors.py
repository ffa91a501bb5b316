"""The reads of clients and portfolios in `clients.selectors`."""

from typing import Any

import pytest

from clients.models import Portfolio
from clients.scope import ClientScope
from clients.selectors import HEADER_FIELDS, visible_portfolio_header
from clients.tests.factories import PortfolioFactory

pytestmark = pytest.mark.django_db

ROLES = ["advisor", "other_advisor", "operations", "auditor", "superuser", "nobody"]


@pytest.mark.parametrize("role", ROLES)
def test_a_portfolio_header_is_given_to_exactly_those_who_see_the_portfolio(
    role: str, request: Any, advisor: Any, django_assert_num_queries: Any
) -> None:
    mine, theirs = PortfolioFactory(client__advisor=advisor), PortfolioFactory()
    user = request.getfixturevalue(role)
    ClientScope.of(user)  # the roles, looked up once per user object: not the lookup's own work
    visible = set(Portfolio.objects.visible_to(user))
    for portfolio in (mine, theirs):
        with django_assert_num_queries(1):
            header = visible_portfolio_header(user, portfolio.pk)
        assert (header is not None) == (portfolio in visible)
    with django_assert_num_queries(1):
        assert visible_portfolio_header(user, theirs.pk + mine.pk) is None  # no such portfolio


def test_a_portfolio_header_holds_what_a_report_reads_and_defers_the_rest(advisor: Any) -> None:
    portfolio = PortfolioFactory(client__advisor=advisor, base_currency="CHF")
    Portfolio.objects.filter(pk=portfolio.pk).update(data_version=7)

    header = visible_portfolio_header(advisor, portfolio.pk)

    assert header is not None
    assert (header.pk, header.client_id, header.base_currency, header.data_version) == (
        portfolio.pk,
        portfolio.client_id,
        "CHF",
        7,
    )
    assert header.get_deferred_fields() == {
        field.attname for field in Portfolio._meta.concrete_fields if field.attname not in HEADER_FIELDS
    }
    assert header.name == portfolio.name  # a deferred field still loads on access


def test_a_key_beyond_any_primary_key_finds_no_header(advisor: Any, api: Any) -> None:
    """Like the ORM, which answers "none" where SQLite would refuse the parameter."""
    assert visible_portfolio_header(advisor, 2**63) is None
    assert visible_portfolio_header(advisor, -(2**63) - 1) is None
    response = api(advisor).get(f"/api/v1/portfolios/{10**20}/valuation/")
    assert response.status_code == 404, response.content
