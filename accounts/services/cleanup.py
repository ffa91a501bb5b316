"""The nightly clean-up of security records that no longer protect anything (run by a job, see accounts.tasks)."""

import datetime

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import EmailLoginCode, LoginSession, OIDCAuthorization

from .counters import counters_purge


@transaction.atomic
def security_records_purge(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Deletes, and says how many of each:
    - login sessions ended (revoked, or past their absolute end) more than SECURITY_RECORDS_RETENTION_DAYS ago:
      the security events keep the history (their link to the session becomes empty);
    - login codes used or expired: they can open nothing any more;
    - OpenID Connect sign-ins started and never finished, once expired;
    - refresh tokens past their expiry, with their blacklist entries (what SimpleJWT's `flushexpiredtokens` does);
    - security counters whose window ended (`purge_security_counters`) and expired Django sessions (`clearsessions`).
    Running it twice deletes nothing the second time."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(days=settings.SECURITY_RECORDS_RETENTION_DAYS)
    sessions, _ = LoginSession.objects.filter(Q(revoked_at__lt=cutoff) | Q(expires_at__lt=cutoff)).delete()
    codes, _ = EmailLoginCode.objects.filter(Q(used_at__isnull=False) | Q(expires_at__lte=now)).delete()
    oidc_authorizations, _ = OIDCAuthorization.objects.filter(expires_at__lte=now).delete()
    tokens = OutstandingToken.objects.filter(expires_at__lte=now)
    token_count = tokens.count()
    tokens.delete()  # cascades to their BlacklistedToken rows
    django_sessions, _ = Session.objects.filter(expire_date__lt=now).delete()
    return {
        "login_sessions": sessions,
        "login_codes": codes,
        "oidc_authorizations": oidc_authorizations,
        "expired_tokens": token_count,
        "security_counters": counters_purge(now=now),
        "django_sessions": django_sessions,
    }
