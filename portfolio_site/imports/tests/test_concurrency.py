"""An import racing the API's writes on the same portfolio (PostgreSQL: SQLite serialises every writer anyway).

Run by an advisor importing for their own client and by a superuser (the `writer` fixture). The portfolio row is
held locked until every writer queues behind it, so each has read the balance before any other commits."""

import datetime
import io
from decimal import Decimal
from typing import Any

import pytest

from clients.models import Portfolio
from clients.tests.factories import main_portfolio
from ledger import services
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from portfolio_site.imports.formats import import_permission_check
from portfolio_site.imports.run import run_import
from portfolio_site.testing import lock_waiters, rows_locked, run_at_once

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = 6
HEADER = "client,kind,amount,currency,date,reference,notes"


def test_imported_withdrawals_racing_posted_ones_never_overdraw_the_portfolio(writer: Any, writers_client: Any) -> None:
    portfolio = main_portfolio(writers_client)
    TransactionFactory(portfolio=portfolio, amount=Decimal("250"), currency="EUR")
    outcomes: dict[str, list[str]] = {"import": [], "api": []}

    def import_withdrawal(n: int) -> None:
        data = f"{HEADER}\n{writers_client.email},withdrawal,100,EUR,2026-07-01,IMP-{n},\n"
        import_permission_check(actor=writer, kind="transactions")  # what every door that imports checks first
        result = run_import(kind="transactions", stream=io.BytesIO(data.encode()), file_name="cash.csv", actor=writer)
        # Refused for the overdraft alone: not for a client the writer may not see, nor anything else.
        assert result.ok or [issue.column for issue in result.issues] == ["amount"], result.issues
        outcomes["import"].append("done" if result.ok else "refused")

    def post_withdrawal(n: int) -> None:
        try:
            services.transaction_post(
                actor=writer,
                portfolio_id=portfolio.pk,
                kind="withdrawal",
                amount=Decimal("100"),
                currency="EUR",
                date=datetime.date(2026, 7, 1),
                reference=f"API-{n}",
            )
            outcomes["api"].append("done")
        except ConflictError:
            outcomes["api"].append("refused")

    def work(n: int) -> None:
        (import_withdrawal if n % 2 else post_withdrawal)(n)

    with rows_locked(Portfolio, [portfolio.pk], release_when=lambda: lock_waiters() >= WORKERS):
        run_at_once(work, WORKERS)

    assert len(outcomes["import"]) == len(outcomes["api"]) == WORKERS // 2  # every writer finished
    assert outcomes["import"].count("done") + outcomes["api"].count("done") == 2, outcomes  # 250 pays for two
    assert Transaction.objects.filter(kind="withdrawal").count() == 2
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == Decimal("50")
