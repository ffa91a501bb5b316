"""Real processes for the outage, concurrency and several-process tests (issue 21): gunicorn serving the test
database, a private redis-server, and a loopback TCP proxy a test can cut. Each one listens on a free loopback
port of its own (never the machine's shared 5432/6379) and is stopped on leaving its `with` block, even when the
test fails."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_address_of_the_tests() -> tuple[str, int]:
    db = connection.settings_dict
    return db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)


def database_url_of_the_tests(*, host: str | None = None, port: int | None = None) -> str:
    """The test database (its committed data: a transactional test's), for another process to use; through
    `host`:`port` (a proxy) if given."""
    db = connection.settings_dict
    default_host, default_port = database_address_of_the_tests()
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{host or default_host}:{port or default_port}/{db['NAME']}"


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10, how: int = signal.SIGTERM) -> str:
    """Stops the process and everything it started (its own session); its output."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, how)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return (output or b"").decode(errors="replace")


class TcpProxy:
    """Forwards loopback connections to `target`; `cut()` drops every open connection and refuses new ones (they
    are accepted and closed at once, as a dead network path looks to a client), `restore()` forwards again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.2)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self._drop_all()

    def cut(self) -> None:
        self._cut.set()
        self._drop_all()

    def restore(self) -> None:
        self._cut.clear()

    def _drop_all(self) -> None:
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                downstream.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((downstream, upstream))
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class RedisServer:
    """A private redis-server: a free port, no persistence, a temporary folder; `stop()` ends it mid-test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self._folder = tempfile.TemporaryDirectory(prefix="redis-test-")
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def __enter__(self) -> Self:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", self._folder.name,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_for_port(self.port, self._process)
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._folder.cleanup()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {stop_process(process)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s: {stop_process(process)}")


class Gunicorn:
    """`gunicorn portfolio_site.wsgi` as the image starts it, with the test settings and `env` (DATABASE_URL,
    REDIS_URL, ...: unset ones are removed from the inherited environment when given as "")."""

    def __init__(self, env: dict[str, str], *, workers: int = 1, threads: int = 4) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portfolio_site.settings.test", **env}
        self.workers, self.threads = workers, threads
        self.output = ""
        self._process: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    def __enter__(self) -> Self:
        command = [
            sys.executable, "-m", "gunicorn", "portfolio_site.wsgi", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers), "--threads", str(self.threads), "--timeout", "60", "--no-control-socket",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_for_port(self.port, self._process, timeout=30)
            deadline = time.monotonic() + 30
            while self.get("/health/live").status_code != 200:  # every worker booted enough to answer
                if time.monotonic() > deadline:
                    raise RuntimeError("gunicorn does not answer /health/live")
                time.sleep(0.1)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.session.close()
        if self._process is not None:
            self.output = stop_process(self._process, how=signal.SIGINT)  # gunicorn's quick shutdown
            self._process = None
            if error is not None or os.environ.get("SHOW_SERVER_LOG"):
                print(self.output)  # noqa: T201 - the server's log, next to the failing test's report

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.session.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)


def access_token(user: Any) -> str:
    """A live API session's access token for `user`, as the login endpoint issues it."""
    from accounts.services.events import ClientInfo
    from accounts.services.sessions import session_start

    _, pair = session_start(user=user, client=ClientInfo(ip="127.0.0.1", user_agent="pytest"))
    assert pair is not None
    return pair.access


def wait_until(check: Any, *, timeout: float = 15, interval: float = 0.1) -> Any:
    """Calls `check()` until it returns something true (returned), or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {check}")
        time.sleep(interval)
    return result
