"""The security audit trail: one explicit call per event, from the service where it happens."""

from dataclasses import dataclass

from accounts.models import LoginSession, SecurityEvent, User

Kind = SecurityEvent.Kind


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from, as the doors hand it to the services (which know nothing of HTTP)."""

    ip: str | None = None
    user_agent: str = ""


def security_event_record(
    *,
    kind: str,
    client: ClientInfo,
    user: User | None = None,
    email: str = "",
    session: LoginSession | None = None,
    detail: str = "",
) -> SecurityEvent:
    """Appends an audit record. Callers pass descriptions, never secrets (passwords, tokens, codes)."""
    return SecurityEvent.objects.create(
        kind=kind,
        user=user,
        email="" if user is not None else email[:254],
        ip=client.ip,
        user_agent=client.user_agent[:512],
        session=session,
        detail=detail[:255],
    )
