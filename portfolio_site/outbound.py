"""Requests to the services outside (market data sources, the asset describer, the broker): one bounded way to ask.

What every such request needs, and each caller had written for itself:

- The answer is read whole within `timeout` seconds, not each socket read: a server dripping a byte at a time
  would otherwise hold a worker for as long as it likes. (One read still waits up to `timeout`, so a call takes at
  most about twice as long.)
- At most `max_bytes` are read, announced or not (a body without a Content-Length is read until the server closes
  it, so only this bounds it): a larger answer is refused, never cut, and a body shorter than announced is a cut.
- No redirect is followed unless the caller allows it, and then only to http(s): urllib's own handler sends the
  request, its headers included, to any host or scheme a 3xx names, so a request that carries credentials must not
  follow one. A redirect not followed is an `Answer` with its 3xx status, for the caller to judge.

Any HTTP status is an `Answer` (status, headers, the body read as above); the caller decides what a status means.
Failures come in two kinds, as the callers treat them:
- `AnswerRefused`: the service answered, but not with something to use (too large, a malformed Content-Length):
  asking again gets the same.
- `Unreachable`: no connection, a timeout, the whole-answer deadline passed, a body cut short: a later try may
  succeed.
Messages name the URL and the reason, never a request header (where credentials travel).
"""

import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

READ_CHUNK = 64 * 1024


class OutboundError(Exception):
    """A request to an outside service failed; see `AnswerRefused` and `Unreachable`."""


class AnswerRefused(OutboundError):
    """The service answered with something not to use (too large, a malformed length): asking again gets the same."""


class Unreachable(OutboundError):
    """The service could not be reached or did not answer whole in time: a later try may succeed."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urlsplit(newurl).scheme not in ("http", "https"):
            return None  # the 3xx is the answer: a web server must not send us to ftp:// or to a local file
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENERS = {False: urllib.request.build_opener(_NoRedirects), True: urllib.request.build_opener(_HttpOnlyRedirects)}


def send(request: urllib.request.Request, *, timeout: float, max_bytes: int, follow_redirects: bool = False) -> Answer:
    """The answer to `request`, read whole within `timeout` seconds and `max_bytes` (see the module)."""
    url = request.full_url
    deadline = time.monotonic() + timeout
    try:
        try:
            response = _OPENERS[follow_redirects].open(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            response = error  # an HTTP answer all the same: its body is read with the same bounds
        with response:
            announced = _content_length(response.headers.get("Content-Length"), url)
            if announced > max_bytes:
                raise AnswerRefused(f"{url} announces {announced} bytes, larger than {max_bytes}.")
            body = _read(response, url, deadline=deadline, timeout=timeout, max_bytes=max_bytes)
            if len(body) < announced:
                raise Unreachable(f"{url} stopped answering after {len(body)} of the {announced} bytes announced.")
            return Answer(response.status or response.code, response.headers, body)
    # A refused connection, an unknown host, a TLS failure, a timeout while connecting or reading, a reset or a
    # malformed answer mid-body: URLErrors, OSErrors and http.client's own exceptions.
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise Unreachable(f"Cannot reach {url}: {reason}.") from None


def _content_length(value: str | None, url: str) -> int:
    """The announced length, or -1 when none is."""
    if value is None or not value.strip():
        return -1
    try:
        length = int(value.strip())
    except ValueError:
        raise AnswerRefused(f"The answer's Content-Length is not a number ({url}).") from None
    if length < 0:
        raise AnswerRefused(f"The answer's Content-Length is negative ({url}).")
    return length


def _read(response: Any, url: str, *, deadline: float, timeout: float, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise Unreachable(f"{url} did not answer whole within {timeout:g} s.")
        chunk = response.read1(min(READ_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise AnswerRefused(f"The answer of {url} is larger than {max_bytes} bytes.")
