"""The Alpaca adapter keeps the broker contract against a local Alpaca, and maps each of its error answers."""

import dataclasses
import logging
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from trading.brokers import BrokerRefused, BrokerState, BrokerUnavailable, OrderTicket
from trading.brokers.alpaca import AlpacaBroker
from trading.tests.alpaca_server import FakeAlpaca
from trading.tests.broker_contract import BrokerContract

D = Decimal
KEY = "PKTESTKEY0000000001"
SECRET = "s3cr3t-DO-NOT-LEAK-8f2b9c"


@pytest.fixture
def alpaca() -> Iterator[FakeAlpaca]:
    fake = FakeAlpaca(api_key=KEY, api_secret=SECRET).start()
    yield fake
    fake.stop()


def adapter(alpaca: FakeAlpaca, **options: Any) -> AlpacaBroker:
    values: dict[str, Any] = {"api_key": KEY, "api_secret": SECRET, "timeout": 2, "max_retry_wait": 0.05}
    return AlpacaBroker(name="alpaca", base_url=alpaca.base_url, **{**values, **options})


def ticket_for(**fields: Any) -> OrderTicket:
    values: dict[str, Any] = {
        "client_order_id": "pb-1",
        "broker_order_id": None,
        "asset_id": 1,
        "symbol": "ACME",
        "currency": "USD",
        "side": "buy",
        "quantity": D("10"),
        "order_type": "market",
        "limit_price": None,
        "time_in_force": "day",
    }
    return OrderTicket(**{**values, **fields})


class TestAlpacaBrokerContract(BrokerContract):
    @pytest.fixture
    def broker(self, alpaca: FakeAlpaca) -> AlpacaBroker:
        return adapter(alpaca)

    @pytest.fixture
    def ticket(self) -> OrderTicket:
        return ticket_for()

    @pytest.fixture
    def fill_ticket(self, alpaca: FakeAlpaca) -> Callable[[OrderTicket], None]:
        return lambda ticket: alpaca.fill(ticket.client_order_id)


def test_an_order_is_sent_as_the_documentation_says(alpaca: FakeAlpaca) -> None:
    ticket = ticket_for(order_type="limit", limit_price=D("99.5000000000"), time_in_force="gtc", side="sell")

    answer = adapter(alpaca).submit(ticket)

    [sent] = alpaca.orders.values()
    assert answer.broker_order_id == sent["id"]
    assert answer.state == BrokerState.ACCEPTED
    assert (sent["symbol"], sent["qty"], sent["side"], sent["type"], sent["time_in_force"]) == (
        "ACME",
        "10",
        "sell",
        "limit",
        "gtc",
    )
    assert (sent["limit_price"], sent["client_order_id"]) == ("99.5000000000", "pb-1")


def test_a_duplicate_client_order_id_answers_the_order_already_placed(alpaca: FakeAlpaca) -> None:
    broker = adapter(alpaca)
    first = broker.submit(ticket_for())

    again = broker.submit(ticket_for(quantity=D("10")))

    assert again.broker_order_id == first.broker_order_id
    assert len(alpaca.orders) == 1
    assert [r for r in alpaca.requests if r[0] == "POST"] == [("POST", "/v2/orders")] * 2


def test_partial_fills_are_reported_with_decimal_quantities_and_prices(alpaca: FakeAlpaca) -> None:
    broker = adapter(alpaca)
    ticket = ticket_for(quantity=D("1.5"))
    placed = broker.submit(ticket)
    alpaca.fill("pb-1", qty=D("0.5"), price=D("100.1234567891"))

    partial = broker.fetch(dataclasses.replace(ticket, broker_order_id=placed.broker_order_id))

    assert partial.state == BrokerState.PARTIALLY_FILLED
    [fill] = partial.fills
    assert (fill.quantity, fill.price, fill.fees) == (D("0.5"), D("100.1234567891"), D("0"))
    assert fill.executed_at.tzinfo is not None

    alpaca.fill("pb-1", price=D("100"))
    filled = broker.fetch(ticket)
    assert filled.state == BrokerState.FILLED
    assert [f.quantity for f in filled.fills] == [D("0.5"), D("1.0")]


def test_fills_are_read_across_pages(alpaca: FakeAlpaca, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trading.brokers.alpaca.FILLS_PAGE_SIZE", 2)
    broker = adapter(alpaca)
    broker.submit(ticket_for(quantity=D("5")))
    for _ in range(5):
        alpaca.fill("pb-1", qty=D("1"))

    answer = broker.fetch(ticket_for())

    assert answer.state == BrokerState.FILLED
    assert len({f.broker_fill_id for f in answer.fills}) == 5
    assert sum(f.quantity for f in answer.fills) == D("5")


def test_an_order_alpaca_refuses_is_refused_with_its_message(alpaca: FakeAlpaca) -> None:
    with pytest.raises(BrokerRefused, match="asset NOPE is not tradable"):
        adapter(alpaca).submit(ticket_for(symbol="NOPE"))
    assert not alpaca.orders


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_are_named_without_the_secret(alpaca: FakeAlpaca, status: int) -> None:
    alpaca.fail_next(status)

    with pytest.raises(BrokerRefused, match="API key and secret") as raised:
        adapter(alpaca).submit(ticket_for())

    assert SECRET not in str(raised.value)
    assert KEY not in str(raised.value)


def test_a_wrong_secret_is_refused_by_the_server_itself(alpaca: FakeAlpaca) -> None:
    with pytest.raises(BrokerRefused, match="credentials") as raised:
        adapter(alpaca, api_secret="wrong-secret-value").check()

    assert "wrong-secret-value" not in str(raised.value)


def test_a_rate_limit_is_retried_after_retry_after_then_succeeds(alpaca: FakeAlpaca) -> None:
    alpaca.fail_next(429, times=2, headers={"Retry-After": "0"})

    answer = adapter(alpaca).submit(ticket_for())

    assert answer.state == BrokerState.ACCEPTED
    assert len(alpaca.orders) == 1
    assert len([r for r in alpaca.requests if r[0] == "POST"]) == 3


def test_a_rate_limit_that_lasts_is_an_outage(alpaca: FakeAlpaca) -> None:
    alpaca.fail_next(429, times=3)

    with pytest.raises(BrokerUnavailable, match="429"):
        adapter(alpaca, max_retries=2).submit(ticket_for())
    assert len(alpaca.requests) == 3


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_an_outage(alpaca: FakeAlpaca, status: int) -> None:
    alpaca.fail_next(status)

    with pytest.raises(BrokerUnavailable, match=str(status)):
        adapter(alpaca).submit(ticket_for())


def test_a_redirect_is_never_followed_so_the_key_pair_never_reaches_another_host(alpaca: FakeAlpaca) -> None:
    alpaca.fail_next(302, headers={"Location": f"{alpaca.base_url}/v2/elsewhere"})

    with pytest.raises(BrokerRefused, match="302"):
        adapter(alpaca, max_retries=0).submit(ticket_for())
    assert [url for _, url in alpaca.requests if "elsewhere" in url] == []


def test_a_server_that_does_not_answer_in_time_is_an_outage(alpaca: FakeAlpaca) -> None:
    alpaca.stall_next(1.5)

    with pytest.raises(BrokerUnavailable, match="did not answer"):
        adapter(alpaca, timeout=0.3).submit(ticket_for())


def test_a_server_that_is_not_there_is_an_outage(alpaca: FakeAlpaca) -> None:
    base_url = alpaca.base_url
    alpaca.stop()

    with pytest.raises(BrokerUnavailable):
        AlpacaBroker(name="alpaca", base_url=base_url, api_key=KEY, api_secret=SECRET, timeout=1).fetch(ticket_for())


def test_an_outage_after_placing_is_resolved_by_submitting_again(alpaca: FakeAlpaca) -> None:
    broker = adapter(alpaca)
    first = broker.submit(ticket_for())
    alpaca.fail_next(503)
    with pytest.raises(BrokerUnavailable):
        broker.submit(ticket_for())

    again = broker.submit(ticket_for())

    assert again.broker_order_id == first.broker_order_id
    assert len(alpaca.orders) == 1


def test_the_connection_check_reads_the_account_and_places_nothing(alpaca: FakeAlpaca) -> None:
    description = adapter(alpaca).check()

    assert "PA1234567" in description
    assert "ACTIVE" in description
    assert alpaca.requests == [("GET", "/v2/account")]
    assert not alpaca.orders


def test_the_secret_never_appears_in_messages_or_logs(alpaca: FakeAlpaca, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    broker = adapter(alpaca, max_retries=1)
    messages: list[str] = [repr(broker)]
    alpaca.fail_next(401)
    alpaca.fail_next(403)
    alpaca.fail_next(429, headers={"Retry-After": "0"})
    alpaca.fail_next(500)
    for call in (broker.check, broker.check, broker.check, broker.check):
        with pytest.raises((BrokerRefused, BrokerUnavailable)) as raised:
            call()
        messages.append(str(raised.value))
    alpaca.stall_next(1)
    with pytest.raises(BrokerUnavailable) as stalled:
        adapter(alpaca, timeout=0.2).check()
    messages.append(str(stalled.value))
    with pytest.raises(BrokerRefused) as wrong:
        adapter(alpaca, api_secret=SECRET + "x").submit(ticket_for())
    messages.append(str(wrong.value))
    broker.submit(ticket_for())
    broker.cancel(ticket_for())
    broker.cancel(ticket_for())

    logged = [record.getMessage() for record in caplog.records] + [caplog.text]
    assert caplog.records
    for text in messages + logged:
        assert SECRET not in text
        assert KEY not in text


def test_a_base_url_that_is_not_http_is_refused_at_configuration() -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="base_url"):
        AlpacaBroker(name="alpaca", base_url="file:///etc/passwd", api_key=KEY, api_secret=SECRET)


def test_a_cancel_alpaca_carries_out_a_moment_later_answers_cancelled(
    alpaca: FakeAlpaca, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trading.brokers.alpaca.CANCEL_POLL_INTERVAL", 0.01)
    alpaca.cancel_asynchronously = True
    broker = adapter(alpaca)
    broker.submit(ticket_for())

    assert broker.cancel(ticket_for()).state == BrokerState.CANCELLED


def test_a_cancel_still_pending_when_the_wait_ends_answers_the_order_open(alpaca: FakeAlpaca) -> None:
    alpaca.cancel_asynchronously = True
    broker = adapter(alpaca, cancel_wait=0)
    broker.submit(ticket_for())

    answer = broker.cancel(ticket_for())

    assert answer.state == BrokerState.ACCEPTED
    assert answer.message == "Alpaca: pending_cancel"


def test_an_order_in_another_currency_is_refused_before_anything_is_sent(alpaca: FakeAlpaca) -> None:
    with pytest.raises(BrokerRefused, match="USD, not EUR"):
        adapter(alpaca).submit(ticket_for(currency="EUR"))
    assert not alpaca.requests
