"""A loopback HTTP server answering as an OpenAI-compatible chat-completions API does, for the describer tests (no
internet). Each POST takes the next queued answer (the last one repeats): a completion, an HTTP error, a delay past
the client's timeout, or a body too large. It remembers every request, headers and body."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def completion(content: Any = "A global equity fund.", finish_reason: str = "stop") -> dict[str, Any]:
    """A chat.completion object as the API documents it."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "vision-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@dataclass
class Answer:
    body: Any = field(default_factory=completion)  # a dict (sent as JSON) or bytes (sent as they are)
    status: int = 200
    delay: float = 0.0
    # "auto": the body's length; None: no Content-Length (the body ends when the server closes the connection);
    # any other string is sent as it is (a malformed header).
    content_length: str | None = "auto"
    drip: float = 0.0  # seconds between bytes: a server that answers, slowly, forever
    location: str | None = None  # a Location header (with a 3xx status)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


class ChatServer:
    def __init__(self) -> None:
        self.answers: list[Answer] = [Answer()]
        self.requests: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                server.requests.append(Seen(self.path, dict(self.headers.items()), body))
                answer = server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
                if answer.delay:
                    time.sleep(answer.delay)
                payload = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    if answer.content_length == "auto":
                        self.send_header("Content-Length", str(len(payload)))
                    elif answer.content_length is not None:
                        self.send_header("Content-Length", answer.content_length)
                    if answer.location:
                        self.send_header("Location", answer.location)
                    if answer.content_length != "auto":
                        self.close_connection = True
                    self.end_headers()
                    if answer.drip:
                        for byte in payload:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(answer.drip)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: what a timeout test wants

            do_GET = do_POST  # what a 302 turns a POST into

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def answer(self, *answers: Answer) -> None:
        self.answers = list(answers)

    def start(self) -> "ChatServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
