"""A loopback HTTP server answering as market data services do, for the market data tests (no internet).

It serves the files of fixtures/market_data/ under /files/, and whatever a test tells it to under other paths:
a body with a status, a delay (a timeout), or a body shorter than the Content-Length it announces (a
connection dropped midway). It remembers the paths asked for.
"""

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "market_data"


@dataclass
class Answer:
    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    delay: float = 0.0
    announced_length: int | None = None


class MarketServer:
    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                answer = server.answer(self.path)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(answer.announced_length or len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: what a timeout test wants

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def answer(self, path: str) -> Answer:
        if path in self.answers:
            return self.answers[path]
        if path.startswith("/files/"):
            file = FIXTURES / path.removeprefix("/files/")
            if file.parent == FIXTURES and file.is_file():
                return Answer(file.read_bytes(), content_type="text/plain")
        return Answer(b"<html><body><h1>404 Not Found</h1></body></html>", status=404, content_type="text/html")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes | str, **kwargs: object) -> str:
        self.answers[path] = Answer(body.encode() if isinstance(body, str) else body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)

    def __enter__(self) -> "MarketServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
