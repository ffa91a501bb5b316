"""Rate limits for the login and email-sending endpoints: per client IP and per email address.

A view names its `throttle_scope` ("login" or "email"); the rates are REST_FRAMEWORK's
`<scope>_ip` and `<scope>_account`. The 429 carries Retry-After.
"""

import hashlib
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import User


class _ScopedThrottle(SimpleRateThrottle):
    suffix = ""

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = f"{view.throttle_scope}_{self.suffix}"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_rate(self) -> str | None:
        if not getattr(self, "scope", None):
            return None
        return super().get_rate()


class IPThrottle(_ScopedThrottle):
    suffix = "ip"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AccountThrottle(_ScopedThrottle):
    """Keyed by the email address in the request body, known to us or not (no enumeration)."""

    suffix = "account"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        email = request.data.get("email") if hasattr(request.data, "get") else None
        if not isinstance(email, str) or not email:
            return None
        ident = hashlib.sha256(User.objects.normalize_email(email).encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


AUTH_THROTTLES = [IPThrottle, AccountThrottle]
