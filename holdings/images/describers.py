"""The describers: what drafts an asset's description from one of its images, chosen by `settings.ASSET_DESCRIBER`.

    none    (the default) nothing is described: uploads work, no job runs, nothing leaves the building.
    openai  a vision model behind an OpenAI-compatible chat-completions API (ASSET_DESCRIBER_BASE_URL, _API_KEY,
            _MODEL): a hosted service or a model server on the firm's own network.
    a dotted path to a class taking the same keyword arguments as `OpenAIDescriber`, for another protocol.

Two kinds of failure, because the job treats them differently (as the market data sources do):
- `DescriberError`: the service answered, but not with a whole description (a 4xx, not JSON, no text, an answer
  cut at its length limit or larger than allowed). Asking again gets the same answer: the proposal fails at once.
- `DescriberUnavailable`: the service could not be reached or did not answer in time (a timeout, a refused
  connection, a 5xx, 408 or 429). A later try may succeed: the job retries it.

The API key lives in the describer alone. It is registered as a log secret whenever it is used, so no log line
shows it, and no message raised here quotes a request's headers.
"""

import base64
import http.client
import json
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from portfolio_site import logs, outbound

# C0 and C1 controls but tab and newline, DEL, and UTF-16 surrogates (which JSON's \\u escapes can produce alone).
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")

BUILT_IN = {"openai": "holdings.images.describers.OpenAIDescriber"}
USER_AGENT = "portfolio-back-office/0.1 (asset descriptions)"

SYSTEM_PROMPT = (
    "You describe financial instruments for the staff of a portfolio manager. From the image (a factsheet page, a "
    "term sheet or a logo) write a short, factual description of the instrument in plain prose: what it is, its "
    "issuer, its strategy or terms as the image states them. Say nothing the image does not show."
)


class DescriberError(Exception):
    """The describer answered, but not with a whole description: asking again gets the same answer."""


class DescriberUnavailable(DescriberError):
    """The describer could not be reached or did not answer in time: a later try may succeed."""


@dataclass(frozen=True)
class Description:
    text: str
    provider: str
    model: str


class Describer(Protocol):
    """What the job needs of a describer: its names (stored with each proposal) and one call."""

    name: str
    model: str

    def describe(self, *, image: bytes, content_type: str, asset_label: str) -> Description: ...


def configured_describer() -> Describer | None:
    """The describer `ASSET_DESCRIBER` names, or None for `none` (nothing is described)."""
    choice = (settings.ASSET_DESCRIBER or "none").strip()
    if choice == "none":
        return None
    try:
        cls = import_string(BUILT_IN.get(choice, choice))
    except ImportError as error:
        raise ImproperlyConfigured(f"ASSET_DESCRIBER: {choice!r} is none, openai or a class to import.") from error
    describer: Describer = cls(
        name=choice,
        base_url=settings.ASSET_DESCRIBER_BASE_URL,
        api_key=settings.ASSET_DESCRIBER_API_KEY,
        model=settings.ASSET_DESCRIBER_MODEL,
        timeout=settings.ASSET_DESCRIBER_TIMEOUT,
        max_chars=settings.ASSET_DESCRIBER_MAX_CHARS,
        max_response_bytes=settings.ASSET_DESCRIBER_MAX_RESPONSE_BYTES,
    )
    return describer


class OpenAIDescriber:
    """A vision model behind `POST {base_url}/chat/completions`, as OpenAI's API and the model servers that copy it
    (vLLM, Ollama, llama.cpp's server, LocalAI) answer it, through the bounded requests of
    `portfolio_site.outbound`."""

    def __init__(
        self,
        *,
        name: str = "openai",
        base_url: str,
        api_key: str,
        model: str,
        timeout: float = 60.0,
        max_chars: int = 4000,
        max_response_bytes: int = 256 * 1024,
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ImproperlyConfigured("ASSET_DESCRIBER_BASE_URL must be an http(s) URL (e.g. https://host/v1).")
        if not model:
            raise ImproperlyConfigured("ASSET_DESCRIBER_MODEL must name the model to ask.")
        self.name, self.model = name, model
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout, self.max_chars, self.max_response_bytes = timeout, max_chars, max_response_bytes

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.model} at {self.base_url}>"

    def describe(self, *, image: bytes, content_type: str, asset_label: str) -> Description:
        logs.secret(self._api_key)
        data_url = f"data:{content_type};base64,{base64.b64encode(image).decode('ascii')}"
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": f"Describe the instrument {asset_label} from this image."},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                },
            ],
            # About four characters a token: room for the longest answer we keep, so a longer one stops at the limit
            # (finish_reason "length") and is refused rather than cut.
            "max_tokens": max(1, self.max_chars // 4 + 1),
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        answer = self._post("/chat/completions", json.dumps(body).encode(), headers)
        return Description(text=self._text_of(answer), provider=self.name, model=self.model)

    def _post(self, path: str, data: bytes, headers: dict[str, str]) -> Any:
        url = self.base_url + path
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        # No redirect followed (the request carries the key, and a 3xx may name any host), the whole answer within
        # the timeout (a slow drip must not hold a worker) and the byte limit: portfolio_site.outbound.
        try:
            answer = outbound.send(request, timeout=self.timeout, max_bytes=self.max_response_bytes)
        except outbound.AnswerRefused as error:
            raise DescriberError(str(error)) from None
        except outbound.Unreachable as error:
            raise DescriberUnavailable(f"{error} Will try again.") from None
        if not 200 <= answer.status < 300:
            said = f"{url} answered HTTP {answer.status} {http.client.responses.get(answer.status, '')}".rstrip()
            if 300 <= answer.status < 400:
                raise DescriberError(f"{said}; redirects are not followed (set ASSET_DESCRIBER_BASE_URL).")
            # A server error, "too many requests" or "request timeout" passes; any other 4xx is our request's fault.
            if answer.status >= 500 or answer.status in (408, 429):
                raise DescriberUnavailable(f"{said}; will try again.")
            raise DescriberError(f"{said}.")
        try:
            return json.loads(answer.body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's stack
            raise DescriberError("The answer is not JSON.") from None

    def _text_of(self, answer: Any) -> str:
        try:
            choice = answer["choices"][0]
            finish_reason = choice.get("finish_reason")
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError, AttributeError):
            raise DescriberError("The answer has no choices[0].message.content.") from None
        if finish_reason == "length":
            raise DescriberError("The answer was cut at its length limit; no part of it is kept.")
        if not isinstance(content, str) or not content.strip():
            raise DescriberError("The answer's content is empty.")
        # No control character but newline and tab: invisible in a description, and PostgreSQL refuses a NUL (a
        # lone surrogate cannot be stored either). Stripped, not refused: the rest of the text is still the answer.
        text = CONTROL_CHARACTERS.sub("", content.replace("\r\n", "\n")).strip()
        if not text:
            raise DescriberError("The answer's content is empty.")
        if len(text) > self.max_chars:
            raise DescriberError(f"The answer is longer than {self.max_chars} characters (ASSET_DESCRIBER_MAX_CHARS).")
        return text
