"""Rate limits for the login and email-sending doors: per client IP and per email address.

A view names its `throttle_scope` ("login" or "email"); the rates are REST_FRAMEWORK's `<scope>_ip` and
`<scope>_account`. The 429 carries Retry-After. The counts are database counters (accounts.services.counters),
not DRF's cache history: a Redis outage must not lift the limits. The admin site's login form counts against
the same limits through `throttle_wait`.
"""

import datetime
import hashlib
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import User
from accounts.services.counters import counter_hit


def _address_ident(email: Any) -> str | None:
    if not isinstance(email, str) or not email:
        return None
    return hashlib.sha256(User.objects.normalize_email(email).encode()).hexdigest()


class CounterThrottle(SimpleRateThrottle):
    """A fixed-window limit counted in the database (accounts.services.counters), so that a Redis outage never
    lifts it: subclasses say which rate of REST_FRAMEWORK's DEFAULT_THROTTLE_RATES applies (`rate_name`) and
    whose requests count together (`ident_for`). A 429 carries Retry-After (`wait`)."""

    def __init__(self) -> None:
        # SimpleRateThrottle reads its rate from `scope` at construction; ours comes with each request.
        self.retry_after: int | None = None

    def rate_name(self, view: Any) -> str | None:
        raise NotImplementedError

    def ident_for(self, request: Request) -> str | None:
        raise NotImplementedError

    def count(self, *, rate_name: str | None, ident: str | None) -> bool:
        """Counts one request; False (with `retry_after` set) once the limit for the window is passed."""
        self.scope = rate_name
        rate = self.get_rate()
        if rate is None or ident is None:
            return True
        limit, seconds = self.parse_rate(rate)
        assert limit is not None
        assert seconds is not None
        count = counter_hit(key=f"throttle:{self.scope}:{ident}", window=datetime.timedelta(seconds=seconds))
        if count.count <= limit:
            return True
        self.retry_after = count.seconds_left()
        return False

    def allow_request(self, request: Request, view: Any) -> bool:
        return self.count(rate_name=self.rate_name(view), ident=self.ident_for(request))

    def get_rate(self) -> str | None:
        if not getattr(self, "scope", None):
            return None
        return super().get_rate()

    def wait(self) -> float | None:
        return self.retry_after


class _ScopedThrottle(CounterThrottle):
    """The login and email doors' limits: the view's `throttle_scope`, per `suffix` (ip or account)."""

    suffix = ""

    def rate_name(self, view: Any) -> str | None:
        return f"{view.throttle_scope}_{self.suffix}"

    def hit(self, *, scope: str, ident: str | None) -> bool:
        return self.count(rate_name=f"{scope}_{self.suffix}", ident=ident)


class IPThrottle(_ScopedThrottle):
    suffix = "ip"

    def ident_for(self, request: Request) -> str | None:
        return self.get_ident(request)


class AccountThrottle(_ScopedThrottle):
    """Keyed by the email address in the request body, known to us or not (no enumeration)."""

    suffix = "account"

    def ident_for(self, request: Request) -> str | None:
        return _address_ident(request.data.get("email") if hasattr(request.data, "get") else None)


AUTH_THROTTLES = [IPThrottle, AccountThrottle]


def throttle_wait(*, scope: str, ip: str | None, email: str | None) -> int | None:
    """Counts a request of `scope` against the IP's and the address's limits, as the API's throttles do for
    their views; the seconds to wait if either is passed, else None."""
    waits = []
    for throttle, ident in ((IPThrottle(), ip), (AccountThrottle(), _address_ident(email))):
        if not throttle.hit(scope=scope, ident=ident):
            waits.append(throttle.retry_after or 1)
    return max(waits) if waits else None
