"""The emails the accounts app sends, each rendered from templates/email/<name>.txt (subject on line one)."""

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from accounts.models import User

logger = logging.getLogger(__name__)


def send_templated(*, template: str, user: User, context: dict[str, Any]) -> None:
    text = render_to_string(f"email/{template}.txt", {"user": user, "site_url": settings.PUBLIC_BASE_URL, **context})
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", None, [user.email])


def send_after_commit(*, template: str, user: User, context: dict[str, Any]) -> None:
    """Sends once the surrounding transaction commits. A mail failure is logged, never raised: no login,
    reset or code request fails, or answers differently, because the mail server is down."""

    def send() -> None:
        try:
            send_templated(template=template, user=user, context=context)
        except Exception:
            logger.exception("Could not send the %s email to user %s", template, user.pk)

    transaction.on_commit(send)
