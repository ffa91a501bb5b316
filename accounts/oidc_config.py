"""The configured OpenID Connect providers, read once from settings.OIDC_PROVIDERS into frozen values and checked.

Settings hold the environment's plain values (see the OIDC_* block in portfolio_site/settings/base.py); this module
is the one place that turns them into `OIDCProvider`s and refuses a configuration that cannot work, naming the
environment variable to fix. It never touches the network: discovery happens on first use (accounts.services.oidc).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts.roles import Role

LOCAL_PASSWORDS_CHOICES = ("on", "superusers", "off")
# A provider's name is part of URLs (/admin/oidc/<name>/...) and of the identity key "oidc:<name>" (64 characters).
# Hosts an issuer may be reached at over plain http:// (a provider on this machine, e.g. in tests).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,58}$")


@dataclass(frozen=True)
class OIDCProvider:
    name: str
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    label: str
    create_users: bool
    roles_claim: str
    # Provider claim value -> our role (group) name.
    role_map: tuple[tuple[str, str], ...]
    trust_amr: frozenset[str]
    api_redirect_uris: tuple[str, ...]
    # Whether a sign-in may link an unlinked user by the provider's verified email (never a superuser).
    link_by_email: bool = True
    # When not empty: linking by email and creating users only for addresses in these domains (lower-case, exact).
    email_domains: frozenset[str] = frozenset()

    def email_domain_allowed(self, email: str) -> bool:
        if not self.email_domains:
            return True
        return email.rpartition("@")[2].lower() in self.email_domains

    @property
    def identity_provider(self) -> str:
        """The `ExternalIdentity.provider` of this provider's accounts."""
        return f"oidc:{self.name}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"

    @property
    def mapped_roles(self) -> frozenset[str]:
        """Our roles this provider manages: role sync adds and removes these only."""
        return frozenset(role for _, role in self.role_map)


def env_prefix(name: str) -> str:
    return f"OIDC_{name.upper().replace('-', '_')}_"


def split_list(value: Any) -> list[str]:
    """A list from a string of values separated by commas or spaces (the environment's), or from a list (settings
    overridden in code)."""
    if isinstance(value, str):
        return [part for part in re.split(r"[\s,]+", value) if part]
    return [str(part).strip() for part in value or () if str(part).strip()]


def _provider(name: str, raw: Mapping[str, Any]) -> OIDCProvider:
    prefix = env_prefix(name)
    if not PROVIDER_NAME.match(name):
        raise ImproperlyConfigured(
            f"OIDC_PROVIDERS: {name!r} is not a valid provider name (lower-case letters, digits and dashes)."
        )
    for field in ("issuer", "client_id"):
        if not raw.get(field):
            raise ImproperlyConfigured(f"{prefix}{field.upper()} is required for the OpenID Connect provider {name!r}.")
    issuer = str(raw["issuer"])
    parts = urlsplit(issuer)
    loopback = parts.hostname in LOOPBACK_HOSTS
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        # Discovery, keys and the code exchange go to the issuer: over plain HTTP anyone on the way could answer.
        raise ImproperlyConfigured(f"{prefix}ISSUER must be an https:// URL (http:// only for a loopback host).")
    email_domains = frozenset(domain.lower() for domain in split_list(raw.get("email_domains")))
    if not all(domain.isascii() and "@" not in domain for domain in email_domains):
        raise ImproperlyConfigured(f"{prefix}EMAIL_DOMAINS must list ASCII domain names (e.g. firm.com).")
    scopes = tuple(split_list(raw.get("scopes") or "openid email profile"))
    if "openid" not in scopes:
        raise ImproperlyConfigured(f"{prefix}SCOPES must include openid.")
    known_roles = {role.value for role in Role}
    role_map = tuple((str(claim), str(role)) for claim, role in dict(raw.get("role_map") or {}).items())
    for claim, role in role_map:
        if role not in known_roles:
            raise ImproperlyConfigured(
                f"{prefix}ROLE_MAP maps {claim!r} to {role!r}, which is not one of our roles "
                f"({', '.join(sorted(known_roles))})."
            )
    roles_claim = str(raw.get("roles_claim") or "")
    if role_map and not roles_claim:
        raise ImproperlyConfigured(f"{prefix}ROLE_MAP needs {prefix}ROLES_CLAIM (the claim holding the roles).")
    return OIDCProvider(
        name=name,
        issuer=issuer,
        client_id=str(raw["client_id"]),
        client_secret=str(raw.get("client_secret") or ""),
        scopes=scopes,
        label=str(raw.get("label") or name),
        create_users=bool(raw.get("create_users", False)),
        roles_claim=roles_claim,
        role_map=role_map,
        trust_amr=frozenset(split_list(raw.get("trust_amr"))),
        api_redirect_uris=tuple(split_list(raw.get("api_redirect_uris"))),
        link_by_email=bool(raw.get("link_by_email", True)),
        email_domains=email_domains,
    )


def oidc_providers() -> dict[str, OIDCProvider]:
    """The configured providers by name, in configuration order; ImproperlyConfigured for a bad configuration.

    Parsed on each call (it is a handful of strings), so tests that override settings see their own providers.
    """
    return {name: _provider(name, raw) for name, raw in settings.OIDC_PROVIDERS.items()}


def local_passwords_check() -> None:
    if settings.LOCAL_PASSWORDS not in LOCAL_PASSWORDS_CHOICES:
        raise ImproperlyConfigured(f"LOCAL_PASSWORDS must be one of {', '.join(LOCAL_PASSWORDS_CHOICES)}.")


def configuration_check() -> None:
    """Run at start-up (AccountsConfig.ready): a configuration that cannot work stops the process."""
    oidc_providers()
    local_passwords_check()
