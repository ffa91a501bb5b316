"""Requests to outside services (portfolio_site.outbound), against a loopback HTTP server: whole answers within
the deadline and the byte limit, redirects only where allowed, failures of the two kinds the callers tell apart."""

import contextlib
import re
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from portfolio_site import outbound

Route = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """Answers each path with its route; remembers every request's path and headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append((self.path, dict(self.headers)))
                # The client may give up mid-answer: what a refusal test wants.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.routes[self.path](self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    thread = threading.Thread(target=running.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def answer(status: int, body: bytes = b"", *, length: bool = True, **headers: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        if length:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def drip(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100")
    handler.end_headers()
    for _ in range(100):  # one byte every 0.1 s: each read is quick, the whole answer is not
        handler.wfile.write(b"x")
        handler.wfile.flush()
        time.sleep(0.1)


def get(server: Server, path: str, **options: object) -> outbound.Answer:
    request = urllib.request.Request(server.url(path), headers={"Authorization": "Bearer secret-key"})
    return outbound.send(request, **{"timeout": 5, "max_bytes": 1000, **options})  # type: ignore[arg-type]


def test_any_http_status_is_an_answer_with_its_body(server: Server) -> None:
    server.routes["/missing"] = answer(404, b'{"detail": "no"}')
    found = get(server, "/missing")
    assert (found.status, found.body) == (404, b'{"detail": "no"}')


def test_a_slow_drip_is_unreachable_once_the_whole_answer_is_late(server: Server) -> None:
    server.routes["/drip"] = drip
    began = time.monotonic()
    with pytest.raises(outbound.Unreachable, match=re.escape("did not answer whole within 0.5 s")):
        get(server, "/drip", timeout=0.5)
    assert time.monotonic() - began < 2


@pytest.mark.parametrize("length", [True, False], ids=["announced", "unannounced"])
def test_an_answer_over_the_byte_limit_is_refused_not_cut(server: Server, length: bool) -> None:
    server.routes["/big"] = answer(200, b"x" * 5000, length=length)
    with pytest.raises(outbound.AnswerRefused, match="larger than 1000"):
        get(server, "/big")


def test_a_body_shorter_than_announced_is_unreachable(server: Server) -> None:
    server.routes["/cut"] = answer(200, b"abc", length=False, Content_Length="10")
    with pytest.raises(outbound.Unreachable):
        get(server, "/cut")


def test_a_redirect_is_not_followed_unless_allowed_so_credentials_stay_with_their_host(server: Server) -> None:
    server.routes["/moved"] = answer(302, Location=server.url("/elsewhere"))
    server.routes["/elsewhere"] = answer(200, b"here")
    assert get(server, "/moved").status == 302
    assert [path for path, _ in server.seen] == ["/moved"]
    assert get(server, "/moved", follow_redirects=True).body == b"here"


def test_an_allowed_redirect_is_never_followed_off_http(server: Server) -> None:
    server.routes["/to-file"] = answer(302, Location="file:///etc/passwd")
    assert get(server, "/to-file", follow_redirects=True).status == 302


def test_a_closed_port_is_unreachable() -> None:
    request = urllib.request.Request("http://127.0.0.1:9/")
    with pytest.raises(outbound.Unreachable, match=re.escape("Cannot reach http://127.0.0.1:9/")):
        outbound.send(request, timeout=2, max_bytes=10)
