"""The accounts app's jobs: its emails (off the request path) and the nightly clean-up."""

import logging
from typing import Any

from accounts import emails
from accounts.models import User
from accounts.services import flows, otp
from accounts.services.cleanup import security_records_purge
from accounts.services.events import ClientInfo
from portfolio_site.jobs.base import job

logger = logging.getLogger(__name__)


@job(name="accounts.send_email", secret_arguments={"context"})
def send_email(*, user_id: int, template: str, context: dict[str, Any]) -> bool:
    """Sends one account email (login code, reset link, verification link, new-IP alert) to the user's address.

    The context holds the code or link, so it is masked in the JobRun and the logs. A mail server that does not
    answer is retried with backoff (`TRANSIENT_ERRORS`). Idempotent as email can be: a user deleted or deactivated
    since gets nothing, and a retry only follows a send that failed. False when nothing was sent."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        logger.info("No %s email: user %s is gone or inactive", template, user_id)
        return False
    emails.send_templated(template=template, user=user, context=context)
    return True


@job(name="accounts.login_code_request")
def login_code_request(*, email: str, ip: str | None = None, user_agent: str = "") -> None:
    """The whole of a login-code request, whatever the address: the request only enqueues this, so it does the
    same work, as fast, for an address with an account and one without (no enumeration by timing)."""
    otp.login_code_request(email=email, client=ClientInfo(ip=ip, user_agent=user_agent))


@job(name="accounts.password_reset_request")
def password_reset_request(*, email: str, ip: str | None = None, user_agent: str = "") -> None:
    """The whole of a password-reset request, whatever the address (see `login_code_request`)."""
    flows.password_reset_request(email=email, client=ClientInfo(ip=ip, user_agent=user_agent))


@job(name="accounts.purge_ended_security_records")
def purge_ended_security_records() -> dict[str, int]:
    """Nightly (a default schedule): ended login sessions, used login codes, expired tokens and counters."""
    deleted = security_records_purge()
    logger.info("Security records deleted: %s", deleted)
    return deleted
