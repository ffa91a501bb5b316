"""The emails the accounts app sends, each rendered from templates/email/<name>.txt (subject on line one)."""

from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from accounts.models import User


def send_templated(*, template: str, user: User, context: dict[str, Any]) -> None:
    text = render_to_string(f"email/{template}.txt", {"user": user, "site_url": settings.PUBLIC_BASE_URL, **context})
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", None, [user.email])


def send_new_ip_alert(*, user: User, ip: str, user_agent: str) -> None:
    send_templated(template="new_ip_login", user=user, context={"ip": ip, "user_agent": user_agent})
