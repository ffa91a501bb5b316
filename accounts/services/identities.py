"""Links between our users and their accounts at identity providers, made and removed by administrators only.

A sign-in through a provider reaches a user only through such a link (accounts.services.supabase, .oidc); every
link and unlink is a security event naming the administrator who made it. (An OpenID Connect sign-in may also link
by a verified email, or a user it creates: accounts.services.oidc records those itself.)
"""

import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from accounts.models import ExternalIdentity, IdentityLinkBlock, User
from accounts.oidc_config import PROVIDER_NAME, oidc_providers
from portfolio_site.errors import ConflictError

from .events import ClientInfo, Kind, security_event_record

SUPABASE = "supabase"
LINK_PERMISSION = "accounts.add_externalidentity"
UNLINK_PERMISSION = "accounts.delete_externalidentity"
NO_CLIENT = ClientInfo()  # a management command: no IP, no browser


def identity_subject_normalize(*, provider: str, subject: str) -> str:
    """The provider's id as stored: for Supabase a UUID in its canonical lower-case form.

    The provider is "supabase" or "oidc:<name>": any other spelling would be a link no sign-in ever finds.
    """
    oidc_name = provider.removeprefix("oidc:")
    if provider != SUPABASE and (oidc_name == provider or not PROVIDER_NAME.match(oidc_name)):
        raise ValidationError({"provider": ['The provider is "supabase" or "oidc:<name>", a name in OIDC_PROVIDERS.']})
    subject = subject.strip()
    if provider == SUPABASE:
        try:
            return str(uuid.UUID(subject))
        except ValueError:
            raise ValidationError({"subject": ["A Supabase user id is a UUID."]}) from None
    if not subject:
        raise ValidationError({"subject": ["The provider's user id is required."]})
    return subject


def identity_issuer(provider: str) -> str:
    """The issuer a link at `provider` is made for: the configured issuer of an OpenID Connect provider (a
    ValidationError when it is not configured here: its `sub` would mean nothing without one), "" for Supabase."""
    if provider == SUPABASE:
        return ""
    configured = oidc_providers().get(provider.removeprefix("oidc:"))
    if configured is None:
        raise ValidationError({"provider": [f"{provider} is not a provider configured here (OIDC_PROVIDERS)."]})
    return configured.issuer


def _require(actor: User, permission: str) -> None:
    if not (actor.is_active and (actor.is_superuser or actor.has_perm(permission))):
        raise PermissionDenied("Only an administrator may link or unlink external identities.")


@transaction.atomic
def identity_link(
    *, user: User, provider: str, subject: str, by: User, client: ClientInfo = NO_CLIENT
) -> ExternalIdentity:
    """Links `user` to the provider's account `subject`; ConflictError if either is linked already."""
    _require(by, LINK_PERMISSION)
    subject = identity_subject_normalize(provider=provider, subject=subject)
    issuer = identity_issuer(provider)
    if ExternalIdentity.objects.filter(provider=provider, subject=subject).exists():
        raise ConflictError("This provider account is already linked to a user.", field="subject")
    if ExternalIdentity.objects.filter(provider=provider, user=user).exists():
        raise ConflictError("This user is already linked to an account at this provider.", field="user")
    identity = ExternalIdentity(provider=provider, subject=subject, issuer=issuer, user=user, linked_by=by)
    identity.full_clean()
    identity.save()
    # An administrator's link is the one thing that lifts an earlier unlink's block on linking by email.
    IdentityLinkBlock.objects.filter(provider=provider, user=user).delete()
    security_event_record(
        kind=Kind.IDENTITY_LINKED, client=client, user=user, detail=f"{provider}:{subject} by {by.email}"
    )
    return identity


@transaction.atomic
def identity_unlink(*, identity: ExternalIdentity, by: User, client: ClientInfo = NO_CLIENT) -> None:
    """Removes the link: the provider's account no longer signs in as the user (open sessions stay, to be
    revoked separately if need be), and no sign-in through that provider links the user again by email until an
    administrator links them (IdentityLinkBlock)."""
    _require(by, UNLINK_PERMISSION)
    security_event_record(
        kind=Kind.IDENTITY_UNLINKED,
        client=client,
        user=identity.user,
        detail=f"{identity.provider}:{identity.subject} by {by.email}",
    )
    IdentityLinkBlock.objects.get_or_create(provider=identity.provider, user=identity.user)
    identity.delete()
