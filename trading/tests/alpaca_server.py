"""A local Alpaca: a loopback HTTP server answering the trading API v2 as its documentation says, with a small
in-memory book of orders and fills, and scripted failures (a status for the next requests, or a stall).

It checks the authentication headers on every request (401 without them, 403 with a wrong pair), refuses a duplicate
`client_order_id` with 422 as Alpaca does, answers `DELETE` with 204 (422 when the order cannot be cancelled), and
lists fills under `/v2/account/activities/FILL`, filtered by `order_id` and paged by `page_token`.
"""

import datetime
import json
import threading
import time
import uuid
from collections import deque
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

OPEN = ("new", "accepted", "pending_new", "partially_filled")


class FakeAlpaca:
    def __init__(self, *, api_key: str, api_secret: str) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.orders: dict[str, dict[str, Any]] = {}
        self.fills: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.account_number = "PA1234567"  # empty: answered without one
        # Scripted answers for the next requests: (status, headers, body) or ("stall", seconds).
        self.script: deque[tuple[Any, ...]] = deque()
        self.lock = threading.Lock()
        # With cancel_asynchronously, a cancelled order reads pending_cancel for its next GET, then canceled.
        self.cancel_asynchronously = False
        self.pending_cancels: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> "FakeAlpaca":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # What a test tells the market.

    def fail_next(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            self.script.append((status, headers or {}, {"code": status * 100000, "message": f"scripted {status}"}))

    def stall_next(self, seconds: float) -> None:
        self.script.append(("stall", seconds))

    def fill(self, client_order_id: str, qty: Decimal | None = None, price: Decimal = Decimal("101.25")) -> None:
        with self.lock:
            order = next(o for o in self.orders.values() if o["client_order_id"] == client_order_id)
            left = Decimal(order["qty"]) - Decimal(order["filled_qty"])
            qty = left if qty is None else min(qty, left)
            now = _now()
            self.fills.append(
                {
                    "id": f"{now.strftime('%Y%m%d%H%M%S%f')}::{uuid.uuid4()}",
                    "activity_type": "FILL",
                    "transaction_time": now.isoformat().replace("+00:00", "Z"),
                    "type": "fill" if qty == left else "partial_fill",
                    "price": str(price),
                    "qty": str(qty),
                    "side": order["side"],
                    "symbol": order["symbol"],
                    "leaves_qty": str(left - qty),
                    "order_id": order["id"],
                    "cum_qty": str(Decimal(order["filled_qty"]) + qty),
                    "order_status": "filled" if qty == left else "partially_filled",
                }
            )
            order["filled_qty"] = str(Decimal(order["filled_qty"]) + qty)
            order["filled_avg_price"] = str(price)
            order["status"] = "filled" if qty == left else "partially_filled"
            if qty == left:
                order["filled_at"] = now.isoformat()

    # Answers.

    def answer(self, method: str, url: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        self.requests.append((method, url))
        if self.script:
            scripted = self.script.popleft()
            if scripted[0] == "stall":
                time.sleep(scripted[1])
                return 200, {}, {}
            return scripted  # type: ignore[return-value]
        key, secret = headers.get("APCA-API-KEY-ID"), headers.get("APCA-API-SECRET-KEY")
        if not key or not secret:
            return 401, {}, {"code": 40110000, "message": "request is not authorized"}
        if (key, secret) != (self.api_key, self.api_secret):
            return 403, {}, {"code": 40310000, "message": "forbidden"}
        parts = urlsplit(url)
        path, query = unquote(parts.path), {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            if method == "GET" and path == "/v2/account":
                return 200, {}, self._account()
            if method == "POST" and path == "/v2/orders":
                return self._place(json.loads(body or b"{}"))
            if method == "GET" and path == "/v2/orders:by_client_order_id":
                found = [o for o in self.orders.values() if o["client_order_id"] == query.get("client_order_id")]
                return (200, {}, found[0]) if found else (404, {}, {"code": 40410000, "message": "order not found"})
            if path.startswith("/v2/orders/"):
                order = self.orders.get(path.removeprefix("/v2/orders/"))
                if order is None:
                    return 404, {}, {"code": 40410000, "message": "order not found"}
                if method == "GET":
                    if order["id"] in self.pending_cancels:
                        self.pending_cancels[order["id"]] -= 1
                        if not self.pending_cancels[order["id"]]:
                            del self.pending_cancels[order["id"]]
                            order["status"] = "canceled"
                            order["canceled_at"] = _now().isoformat()
                    return 200, {}, order
                if method == "DELETE":
                    if order["status"] not in OPEN:
                        return 422, {}, {"code": 42210000, "message": "order is not cancelable"}
                    if self.cancel_asynchronously:
                        # Alpaca accepts the cancel and carries it out a moment later.
                        order["status"] = "pending_cancel"
                        self.pending_cancels[order["id"]] = 2
                        return 204, {}, None
                    order["status"] = "canceled"
                    order["canceled_at"] = _now().isoformat()
                    return 204, {}, None
            if method == "GET" and path == "/v2/account/activities/FILL":
                return 200, {}, self._activities(query)
        return 404, {}, {"code": 40410000, "message": "endpoint not found"}

    def _account(self) -> dict[str, Any]:
        return {
            "id": "904837e3-3b76-47ec-b432-046db621571b",
            "account_number": self.account_number,
            "status": "ACTIVE",
            "currency": "USD",
            "buying_power": "262113.632",
            "cash": "131056.816",
        }

    def _place(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        client_order_id = body.get("client_order_id") or str(uuid.uuid4())
        if any(o["client_order_id"] == client_order_id for o in self.orders.values()):
            return 422, {}, {"code": 40010001, "message": "client_order_id must be unique"}
        for required in ("symbol", "side", "type", "time_in_force"):
            if not body.get(required):
                return 422, {}, {"code": 40010001, "message": f"{required} is required"}
        if not isinstance(body.get("qty"), str) or Decimal(body["qty"]) <= 0:
            return 422, {}, {"code": 40010001, "message": "qty must be > 0"}
        if body["type"] == "limit" and not body.get("limit_price"):
            return 422, {}, {"code": 40010001, "message": "limit_price is required for limit orders"}
        if body["symbol"] == "NOPE":
            return 422, {}, {"code": 42210000, "message": "asset NOPE is not tradable"}
        now = _now().isoformat()
        order = {
            "id": str(uuid.uuid4()),
            "client_order_id": client_order_id,
            "created_at": now,
            "updated_at": now,
            "submitted_at": now,
            "filled_at": None,
            "canceled_at": None,
            "symbol": body["symbol"],
            "asset_class": "us_equity",
            "qty": body["qty"],
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_type": body["type"],
            "type": body["type"],
            "side": body["side"],
            "time_in_force": body["time_in_force"],
            "limit_price": body.get("limit_price"),
            "status": "accepted",
        }
        self.orders[order["id"]] = order
        return 200, {}, order

    def _activities(self, query: dict[str, str]) -> list[dict[str, Any]]:
        fills = [f for f in self.fills if "order_id" not in query or f["order_id"] == query["order_id"]]
        if query.get("direction", "desc") == "desc":
            fills.reverse()
        if "page_token" in query:
            ids = [f["id"] for f in fills]
            fills = fills[ids.index(query["page_token"]) + 1 :] if query["page_token"] in ids else []
        return fills[: int(query.get("page_size", 100))]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _handler(fake: FakeAlpaca) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = fake.answer(self.command, self.path, self.headers, body)
            raw = b"" if payload is None or status == 204 else json.dumps(payload).encode()
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # The client gave up (a timeout test).

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
