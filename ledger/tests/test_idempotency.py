"""`Idempotency-Key` on posting transactions and cash transfers (portfolio_site.idempotency), Stripe's semantics."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site.idempotency.models import IdempotencyKey
from portfolio_site.testing import run_at_once

URL = "/api/v1/transactions/"
REUSED = "This Idempotency-Key was used with a different request"


def deposit(client_id: int, amount: str = "100.00", **extra: Any) -> dict[str, Any]:
    return {"client": client_id, "kind": "deposit", "amount": amount, "currency": "EUR", "date": "2026-06-01", **extra}


def post(api_client: APIClient, url: str, body: dict[str, Any], key: str | None = "key-1") -> Any:
    headers = {} if key is None else {"Idempotency-Key": key}
    return api_client.post(url, body, format="json", headers=headers)


def replayed(response: Any) -> bool:
    return response.headers.get("Idempotent-Replayed") == "true"


@pytest.fixture
def advised(advisor: Any) -> Any:
    """The advisor's client."""
    return ClientFactory(advisor=advisor)


@pytest.mark.django_db
class TestTransactions:
    def test_the_same_key_and_body_replay_the_first_answer_and_post_once(self, advisor, advised, api) -> None:
        first = post(api(advisor), URL, deposit(advised.pk))
        again = post(api(advisor), URL, deposit(advised.pk))

        assert first.status_code == again.status_code == 201, first.content
        assert again.json() == first.json()
        assert (replayed(first), replayed(again)) == (False, True)
        assert Transaction.objects.count() == 1
        assert IdempotencyKey.objects.get().response_status == 201

    def test_the_body_is_compared_whatever_the_order_of_its_fields(self, advisor, advised, api) -> None:
        body = deposit(advised.pk)
        first = post(api(advisor), URL, body)
        again = post(api(advisor), URL, dict(reversed(body.items())))
        assert (again.status_code, again.json()) == (201, first.json())
        assert Transaction.objects.count() == 1

    def test_the_same_key_with_another_body_is_refused_with_422(self, advisor, advised, api) -> None:
        post(api(advisor), URL, deposit(advised.pk))
        other = post(api(advisor), URL, deposit(advised.pk, "100.01"))

        assert other.status_code == 422
        assert other.json()["detail"].startswith(REUSED)
        assert Transaction.objects.count() == 1

    def test_the_same_key_on_another_endpoint_is_refused_with_422(self, advisor, advised, api) -> None:
        main, pension = main_portfolio(advised), PortfolioFactory(client=advised)
        post(api(advisor), URL, deposit(advised.pk, portfolio=main.pk))
        transfer = {"to_portfolio": pension.pk, "amount": "10", "currency": "EUR", "date": "2026-06-01"}
        other = post(api(advisor), f"/api/v1/portfolios/{main.pk}/transfer-cash/", transfer)

        assert other.status_code == 422
        assert other.json()["detail"].startswith(REUSED)
        assert not Transaction.objects.filter(kind__in=Transaction.TRANSFERS).exists()

    def test_another_users_same_key_is_a_key_of_its_own(self, advisor, advised, operations, api) -> None:
        mine = post(api(advisor), URL, deposit(advised.pk))
        theirs = post(api(operations), URL, deposit(advised.pk, "7"))

        assert (mine.status_code, theirs.status_code) == (201, 201)
        assert not replayed(theirs)
        assert Transaction.objects.count() == 2
        assert IdempotencyKey.objects.filter(key="key-1").count() == 2

    def test_an_expired_key_acts_as_new(self, advisor, advised, api, settings) -> None:
        first = post(api(advisor), URL, deposit(advised.pk))
        IdempotencyKey.objects.update(created_at=first_seen_before(settings.IDEMPOTENCY_KEY_TTL))
        again = post(api(advisor), URL, deposit(advised.pk, "5"))  # another body: no 422 once expired

        assert again.status_code == 201, again.content
        assert not replayed(again)
        assert again.json()["id"] != first.json()["id"]
        assert Transaction.objects.count() == 2
        key = IdempotencyKey.objects.get()
        assert key.response_body["id"] == again.json()["id"]

    def test_a_400_is_not_kept_and_the_key_then_serves_the_fixed_body(self, advisor, advised, api) -> None:
        invalid = post(api(advisor), URL, deposit(advised.pk, "-5"))
        assert invalid.status_code == 400
        assert "amount" in invalid.json()
        assert not IdempotencyKey.objects.exists()

        fixed = post(api(advisor), URL, deposit(advised.pk, "5"))
        assert fixed.status_code == 201, fixed.content
        assert not replayed(fixed)
        assert Transaction.objects.count() == 1

    def test_a_409_is_kept_and_replayed_even_once_the_request_would_succeed(self, advisor, advised, api) -> None:
        withdrawal = deposit(advised.pk, "50", kind="withdrawal")
        refused = post(api(advisor), URL, withdrawal)
        assert refused.status_code == 409
        TransactionFactory(client=advised, amount=Decimal("500"), currency="EUR")

        again = post(api(advisor), URL, withdrawal)
        assert (again.status_code, again.json()) == (409, refused.json())
        assert replayed(again)
        assert not Transaction.objects.filter(kind="withdrawal").exists()

    def test_a_404_is_not_kept(self, advisor, api) -> None:
        hidden = ClientFactory()  # another advisor's client: as unknown to this one
        response = post(api(advisor), f"/api/v1/portfolios/{main_portfolio(hidden).pk}/transfer-cash/", {})
        assert response.status_code == 404
        assert not IdempotencyKey.objects.exists()

    def test_without_the_header_every_post_is_a_new_posting(self, advisor, advised, api) -> None:
        responses = [post(api(advisor), URL, deposit(advised.pk), key=None) for _ in range(2)]

        assert [r.status_code for r in responses] == [201, 201]
        assert not any(replayed(r) for r in responses)
        assert Transaction.objects.count() == 2
        assert not IdempotencyKey.objects.exists()

    @pytest.mark.parametrize("key", ["k" * 256, "", "caf\u00e9", "tab\there"])
    def test_a_malformed_key_is_refused_with_400_naming_the_header(self, key: str, advisor, advised, api) -> None:
        response = post(api(advisor), URL, deposit(advised.pk), key=key)

        assert response.status_code == 400
        assert list(response.json()) == ["Idempotency-Key"]
        assert not Transaction.objects.exists()
        assert not IdempotencyKey.objects.exists()

    def test_a_key_of_255_printable_characters_is_accepted(self, advisor, advised, api) -> None:
        key = ("0123456789 ~!" * 20)[:255]
        assert post(api(advisor), URL, deposit(advised.pk), key=key).status_code == 201
        assert IdempotencyKey.objects.get().key == key

    def test_an_unauthenticated_request_is_refused_before_any_key_is_kept(self, advised) -> None:
        assert post(APIClient(), URL, deposit(advised.pk)).status_code == 401
        assert not IdempotencyKey.objects.exists()


def first_seen_before(ttl: datetime.timedelta) -> datetime.datetime:
    return timezone.now() - ttl - datetime.timedelta(seconds=1)


@pytest.fixture
def two_portfolios(advisor: Any, advised: Any) -> tuple[Portfolio, Portfolio]:
    main = main_portfolio(advised)
    TransactionFactory(portfolio=main, amount=Decimal("1000"), currency="EUR")
    return main, PortfolioFactory(client=advised, name="Pension")


@pytest.mark.django_db
def test_a_replayed_cash_transfer_posts_its_two_legs_once(advisor, two_portfolios, api) -> None:
    main, pension = two_portfolios
    url = f"/api/v1/portfolios/{main.pk}/transfer-cash/"
    body = {"to_portfolio": pension.pk, "amount": "250", "currency": "EUR", "date": "2026-06-01"}
    first, again = post(api(advisor), url, body), post(api(advisor), url, body)

    assert first.status_code == again.status_code == 201, first.content
    assert again.json() == first.json()
    assert replayed(again)
    assert Transaction.objects.filter(kind__in=Transaction.TRANSFERS).count() == 2


@pytest.mark.django_db
def test_the_same_key_for_another_portfolios_transfer_is_refused_with_422(advisor, two_portfolios, api) -> None:
    main, pension = two_portfolios
    TransactionFactory(portfolio=pension, amount=Decimal("1000"), currency="EUR")
    body = {"amount": "250", "currency": "EUR", "date": "2026-06-01"}
    post(api(advisor), f"/api/v1/portfolios/{main.pk}/transfer-cash/", {**body, "to_portfolio": pension.pk})
    other = post(api(advisor), f"/api/v1/portfolios/{pension.pk}/transfer-cash/", {**body, "to_portfolio": main.pk})

    assert other.status_code == 422
    assert Transaction.objects.filter(kind__in=Transaction.TRANSFERS).count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_posts_with_one_key_post_once_and_answer_alike(writer: Any, writers_client: Any) -> None:
    body = deposit(writers_client.pk, "42.00")
    answers: list[tuple[int, Any, bool]] = []

    def send(_: int) -> None:
        api_client = APIClient()
        api_client.force_authenticate(User.objects.get(pk=writer.pk))
        response = post(api_client, URL, body, key="one-key-for-all")
        answers.append((response.status_code, response.json(), replayed(response)))

    run_at_once(send, 20)

    assert len(answers) == 20
    assert {status for status, _, _ in answers} == {201}
    assert all(payload == answers[0][1] for _, payload, _ in answers)
    assert sorted(was_replayed for _, _, was_replayed in answers) == [False] + [True] * 19
    assert Transaction.objects.filter(portfolio__client=writers_client).count() == 1
    assert IdempotencyKey.objects.count() == 1
