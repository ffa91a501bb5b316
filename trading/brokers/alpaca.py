"""An adapter for Alpaca's trading API (v2), from its public documentation.

Orders go to `POST /v2/orders` under our client order id, which is what makes submission idempotent: Alpaca refuses
a second order with the same `client_order_id` (422), and the adapter then answers the order already placed, found
through `GET /v2/orders:by_client_order_id`. Fills come from `GET /v2/account/activities/FILL?order_id=...`.

Errors: 401/403 are credentials (refused, naming neither key nor secret), 404 an unknown order, 422 a refusal, 429
a rate limit (retried, honouring `Retry-After`), 5xx and network failures an outage. The key and the secret travel
only in the request headers: never in a log record, an exception message or a URL.

Requests go through `portfolio_site.outbound`: bounded in time and size, and no redirect is followed, so the key
pair never reaches another host.
"""

import datetime
import json
import logging
import time
import urllib.parse
import urllib.request
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from portfolio_site import outbound
from portfolio_site.logs import secret

from .base import BrokerFill, BrokerOrder, BrokerRefused, BrokerState, BrokerUnavailable, OrderTicket

logger = logging.getLogger(__name__)

# Alpaca's trading API answers paper trading and live trading at two addresses, with a key pair for each.
BASE_URLS = {"paper": "https://paper-api.alpaca.markets", "live": "https://api.alpaca.markets"}
PAPER_BASE_URL = BASE_URLS["paper"]

# Alpaca's order statuses, in BrokerState's words. Statuses of an order still working at Alpaca (new, pending_new,
# accepted_for_bidding, pending_cancel, pending_replace, replaced, stopped, calculated, held, suspended, done_for_day
# without fills) read as accepted; the fills decide whether it is partially filled.
STATES = {
    "new": BrokerState.ACCEPTED,
    "accepted": BrokerState.ACCEPTED,
    "pending_new": BrokerState.ACCEPTED,
    "accepted_for_bidding": BrokerState.ACCEPTED,
    "pending_cancel": BrokerState.ACCEPTED,
    "pending_replace": BrokerState.ACCEPTED,
    "replaced": BrokerState.ACCEPTED,
    "stopped": BrokerState.ACCEPTED,
    "calculated": BrokerState.ACCEPTED,
    "held": BrokerState.ACCEPTED,
    "suspended": BrokerState.ACCEPTED,
    "done_for_day": BrokerState.ACCEPTED,
    "partially_filled": BrokerState.PARTIALLY_FILLED,
    "filled": BrokerState.FILLED,
    "canceled": BrokerState.CANCELLED,
    "expired": BrokerState.EXPIRED,
    "rejected": BrokerState.REJECTED,
}
FILLS_PAGE_SIZE = 100
# The statuses of an order whose cancel Alpaca has accepted but not yet carried out.
CANCEL_PENDING = ("pending_cancel", "new", "accepted", "pending_new", "partially_filled")
CANCEL_POLL_INTERVAL = 0.25
# The largest answer read: a page of fills or orders is a few hundred kilobytes at most.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


class AlpacaBroker:
    def __init__(
        self,
        *,
        name: str,
        api_key: str,
        api_secret: str,
        environment: str = "paper",
        base_url: str = "",
        timeout: float = 10,
        max_retries: int = 3,
        max_retry_wait: float = 30,
        fee_rate: str = "0",
        cancel_wait: float = 2,
        currency: str = "USD",
    ) -> None:
        self.name = name
        if environment not in BASE_URLS:
            raise ImproperlyConfigured(f"Broker {name!r}: environment is one of {', '.join(BASE_URLS)}.")
        self.environment = environment
        base_url = base_url or BASE_URLS[environment]
        if urllib.parse.urlsplit(base_url).scheme not in ("https", "http"):
            raise ImproperlyConfigured(f"Broker {name!r}: base_url must be an http(s) URL.")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._api_secret = api_secret
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.max_retry_wait = float(max_retry_wait)
        # Alpaca charges no commission on US equities; a rate covers regulatory fees where a firm wants them held.
        self.fee_rate = Decimal(fee_rate)
        self.cancel_wait = float(cancel_wait)
        # The account's currency: Alpaca's US account trades in dollars, and an order in another currency is refused.
        self.currency = currency
        # The account number the key pair trades, read once (GET /v2/account) to check each order's account against.
        self._account_number: str | None = None

    def __repr__(self) -> str:
        return f"AlpacaBroker(name={self.name!r}, base_url={self.base_url!r})"

    # The interface.

    def estimate_fees(self, *, side: str, quantity: Decimal, price: Decimal) -> Decimal:
        return quantity * price * self.fee_rate

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        if ticket.currency != self.currency:
            raise BrokerRefused(f"This Alpaca account trades in {self.currency}, not {ticket.currency}.")
        if ticket.account_id and ticket.account_id != self._trading_account():
            # A key pair trades one account: an order meant for another must not land in this one.
            raise BrokerRefused(
                f"The order is for account {ticket.account_id}, which is not the account this connection trades: "
                "check the portfolio's account at this broker."
            )
        body: dict[str, Any] = {
            "symbol": ticket.symbol,
            "qty": str(ticket.quantity),
            "side": ticket.side,
            "type": ticket.order_type,
            "time_in_force": ticket.time_in_force,
            "client_order_id": ticket.client_order_id,
        }
        if ticket.limit_price is not None:
            body["limit_price"] = str(ticket.limit_price)
        status, order = self._call("POST", "/v2/orders", body=body, accept=(200, 422))
        if status == 422:
            # A duplicate client order id is how Alpaca answers a retried submission: answer the order it holds.
            # Any other 422 is a refusal of the order itself.
            existing = self._order_by_client_id(ticket.client_order_id, missing_ok=True)
            if existing is None:
                raise BrokerRefused(f"Alpaca refused the order: {_message(order)}")
            order = existing
        return self._answer(order)

    def fetch(self, ticket: OrderTicket) -> BrokerOrder:
        return self._answer(self._order_for(ticket))

    def cancel(self, ticket: OrderTicket) -> BrokerOrder:
        order = self._order_for(ticket)
        order_id = str(order["id"])
        status, answer = self._call("DELETE", f"/v2/orders/{_quote(order_id)}", accept=(200, 204, 422))
        if status == 422:
            # Not cancelable (filled, or already ended): answer its state as it is.
            logger.info("Alpaca order %s is not cancelable: %s", order_id, _message(answer))
            return self._answer(self._order_by_id(order_id))
        # Alpaca accepts a cancel request (204) and cancels asynchronously (pending_cancel): wait a little for its end,
        # then answer whatever it is (still open, if the cancel has not gone through; the caller sees it as such).
        deadline = time.monotonic() + self.cancel_wait
        while True:
            order = self._order_by_id(order_id)
            if order.get("status") not in CANCEL_PENDING or time.monotonic() >= deadline:
                return self._answer(order)
            time.sleep(CANCEL_POLL_INTERVAL)

    def check(self) -> str:
        """Tests the connection without placing anything: reads the account. Answers a short description."""
        # No waiting out a rate limit here: whoever asked is waiting for the answer.
        _, account = self._call("GET", "/v2/account", retries=0)
        account = account if isinstance(account, dict) else {}
        number = account.get("account_number")
        if number:
            self._account_number = str(number)
        return (
            f"Alpaca account {number or account.get('id') or '?'} ({account.get('status', 'unknown status')}), "
            f"buying power {_decimal(account.get('buying_power', '0'))} {account.get('currency', '')}".rstrip()
        )

    def _trading_account(self) -> str:
        if self._account_number is None:
            _, account = self._call("GET", "/v2/account")
            number = _object(account).get("account_number")
            if not number:
                raise BrokerUnavailable("Alpaca answered the account without its number.")
            self._account_number = str(number)
        return self._account_number

    # Reading orders and fills.

    def _order_for(self, ticket: OrderTicket) -> dict[str, Any]:
        if ticket.broker_order_id:
            return self._order_by_id(ticket.broker_order_id)
        order = self._order_by_client_id(ticket.client_order_id, missing_ok=False)
        assert order is not None
        return order

    def _order_by_id(self, order_id: str) -> dict[str, Any]:
        status, order = self._call("GET", f"/v2/orders/{_quote(order_id)}", accept=(200, 404))
        if status == 404:
            raise BrokerRefused(f"Alpaca has no order {order_id}.")
        return _object(order)

    def _order_by_client_id(self, client_order_id: str, *, missing_ok: bool) -> dict[str, Any] | None:
        query = urllib.parse.urlencode({"client_order_id": client_order_id})
        status, order = self._call("GET", f"/v2/orders:by_client_order_id?{query}", accept=(200, 404))
        if status == 404:
            if missing_ok:
                return None
            raise BrokerRefused(f"Alpaca has no order with client order id {client_order_id}.")
        return _object(order)

    def _fills(self, order_id: str) -> tuple[BrokerFill, ...]:
        fills: dict[str, BrokerFill] = {}
        params: dict[str, str] = {"order_id": order_id, "direction": "asc", "page_size": str(FILLS_PAGE_SIZE)}
        while True:
            _, page = self._call("GET", f"/v2/account/activities/FILL?{urllib.parse.urlencode(params)}")
            if not isinstance(page, list):
                raise BrokerUnavailable("Alpaca answered the fills with something other than a list.")
            for activity in page:
                # The filter is recent at Alpaca: keep only this order's fills whatever the server did with it.
                if str(activity.get("order_id")) == order_id:
                    fill = _fill(activity)
                    fills[fill.broker_fill_id] = fill
            if len(page) < FILLS_PAGE_SIZE:
                return tuple(fills.values())
            params["page_token"] = str(page[-1]["id"])

    def _answer(self, order: dict[str, Any]) -> BrokerOrder:
        order_id = str(order.get("id") or "")
        if not order_id:
            raise BrokerUnavailable("Alpaca answered an order without an id.")
        alpaca_status = str(order.get("status", ""))
        state = STATES.get(alpaca_status, BrokerState.ACCEPTED)
        filled_qty = _decimal(order.get("filled_qty") or "0")
        fills = self._fills(order_id) if filled_qty > 0 else ()
        if state == BrokerState.ACCEPTED and filled_qty > 0:
            state = BrokerState.PARTIALLY_FILLED
        return BrokerOrder(broker_order_id=order_id, state=state, fills=fills, message=f"Alpaca: {alpaca_status}")

    # HTTP.

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (200,),
        retries: int | None = None,
    ) -> tuple[int, Any]:
        """One request, retried on 429 (after Retry-After, if given) up to `retries` times (max_retries unless
        given); answers (status, decoded JSON or None)."""
        retries = self.max_retries if retries is None else retries
        # Whatever this request logs (an error naming a header, say) is masked of the credentials.
        secret(self._api_key)
        secret(self._api_secret)
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "APCA-API-KEY-ID": self._api_key,
            "APCA-API-SECRET-KEY": self._api_secret,
            "Accept": "application/json",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
            try:
                # No redirect followed (the key pair travels in the headers, and a 3xx may name any host), the whole
                # answer within the timeout and MAX_ANSWER_BYTES: portfolio_site.outbound.
                answer = outbound.send(request, timeout=self.timeout, max_bytes=MAX_ANSWER_BYTES)
            except (ValueError, UnicodeError, outbound.AnswerRefused) as error:
                # A request that could not be written (a header value the HTTP client refuses) or an answer not to
                # read: its own message may quote a header, so none of it is kept.
                logger.warning("Alpaca %s %s failed: %s", method, _path(path), type(error).__name__)
                raise BrokerUnavailable(
                    f"Alpaca could not be asked {method} {_path(path)} ({type(error).__name__})."
                ) from None
            except outbound.Unreachable:
                logger.warning("Alpaca %s %s did not answer", method, _path(path))
                raise BrokerUnavailable(f"Alpaca did not answer {method} {_path(path)}.") from None
            status, payload = answer.status, _decode(answer.body)
            retry_after = answer.headers.get("Retry-After")
            if status in accept:
                return status, payload
            if status == 429 and attempt < retries:
                attempt += 1
                wait = _retry_after(retry_after, default=min(2.0**attempt, self.max_retry_wait))
                logger.info("Alpaca rate limit on %s %s; retry %d in %.1fs", method, _path(path), attempt, wait)
                time.sleep(min(wait, self.max_retry_wait))
                continue
            raise _error(status, payload, method, path)


def _error(status: int, payload: Any, method: str, path: str) -> Exception:
    where = f"{method} {_path(path)}"
    if status in (401, 403):
        logger.warning("Alpaca refused the credentials of this connection (%s on %s)", status, where)
        return BrokerRefused(
            f"Alpaca refused this connection's API key and secret ({status} on {where}): check the credentials "
            "and that they belong to this base URL (paper or live)."
        )
    if status == 429:
        return BrokerUnavailable(f"Alpaca kept answering 429 (rate limit) on {where}; try again later.")
    if status >= 500:
        return BrokerUnavailable(f"Alpaca answered {status} on {where}: {_message(payload)}")
    return BrokerRefused(f"Alpaca refused {where} ({status}): {_message(payload)}")


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw, parse_float=Decimal, parse_int=Decimal)
    except ValueError:
        return None


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BrokerUnavailable("Alpaca answered an order with something other than an object.")
    return value


def _message(payload: Any) -> str:
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])[:200]
    return "no message"


def _path(path: str) -> str:
    """The path without its query (client order ids and page tokens are not secrets, but logs need none of them)."""
    return path.split("?", 1)[0]


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _retry_after(value: str | None, *, default: float) -> float:
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise BrokerUnavailable(f"Alpaca answered {str(value)[:40]!r} where a number was expected.") from None


def _fill(activity: dict[str, Any]) -> BrokerFill:
    executed_at = datetime.datetime.fromisoformat(str(activity["transaction_time"]).replace("Z", "+00:00"))
    if executed_at.tzinfo is None:
        executed_at = executed_at.replace(tzinfo=datetime.UTC)
    return BrokerFill(
        broker_fill_id=str(activity["id"]),
        quantity=_decimal(activity["qty"]),
        price=_decimal(activity["price"]),
        executed_at=executed_at,
    )
