"""50 withdrawals at once through gunicorn on PostgreSQL (issue 21): the row locks of `transaction_post` hold
across processes and threads, not only inside one test process. Budget: ~10 s."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import requests

from accounts.tests.factories import AdvisorFactory
from clients.tests.factories import ClientFactory, main_portfolio
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.tests.servers import Gunicorn, access_token, database_url_of_the_tests

REQUESTS, COVERED = 50, 10


@pytest.mark.postgres
def test_fifty_concurrent_withdrawals_through_gunicorn_against_a_balance_covering_ten_post_exactly_ten(
    staff_roles: None,
) -> None:
    advisor = AdvisorFactory()  # in the real Advisors role, withdrawing for their own client
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    portfolio = main_portfolio(client)
    TransactionFactory(portfolio=portfolio, amount=Decimal("1000"), currency="EUR")
    token = access_token(advisor)
    body = {"portfolio": portfolio.pk, "kind": "withdrawal", "amount": "100", "currency": "EUR", "date": "2026-07-01"}
    start = threading.Barrier(REQUESTS)

    with Gunicorn({"DATABASE_URL": database_url_of_the_tests()}, workers=2, threads=8) as server:

        def withdraw(_: int) -> tuple[int, Any]:
            start.wait(timeout=30)  # released together
            response = requests.post(
                f"{server.base}/api/v1/transactions/",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            return response.status_code, response.json()

        with ThreadPoolExecutor(REQUESTS) as pool:
            results = list(pool.map(withdraw, range(REQUESTS)))

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: COVERED, 409: REQUESTS - COVERED}, results
    refusals = {body["detail"] for status, body in results if status == 409}
    assert len(refusals) == 1  # one clear reason, the same for every refused withdrawal
    assert Transaction.objects.filter(portfolio=portfolio, kind="withdrawal").count() == COVERED
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == Decimal("0")
