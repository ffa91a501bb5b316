"""The emails the accounts app sends, each rendered from templates/email/<name>.txt (subject on line one)."""

from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from accounts.models import User
from portfolio_site.jobs.base import enqueue


def send_templated(*, template: str, user: User, context: dict[str, Any]) -> None:
    text = render_to_string(f"email/{template}.txt", {"user": user, "site_url": settings.PUBLIC_BASE_URL, **context})
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", None, [user.email])


def send_after_commit(*, template: str, user: User, context: dict[str, Any]) -> None:
    """Hands the email to a worker once the surrounding transaction commits (accounts.tasks.send_email): the
    request neither waits for the mail server nor fails with it, so it answers alike, as fast, whether or not an
    email leaves (no account enumeration by timing). The worker retries a mail server that does not answer."""
    from accounts.tasks import send_email  # the task module imports this one

    enqueue(send_email, user_id=user.pk, template=template, context=context)
