"""Broker connections at work: the adapter a connection signs in with, the account a portfolio's order goes to, and
the test of a connection that places nothing.

An adapter is built from its connection (kind, environment, endpoint, decrypted credentials) and its kind's shared
options (settings.TRADING_BROKER_KINDS), and kept per process until the connection or those options change: a
replaced secret is used from the next call on. The decrypted credentials live in the adapter alone; nothing here
logs them, and a check's message is cleared of them before it is shown or stored.
"""

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils import timezone
from django.utils.module_loading import import_string

from clients.models import Portfolio
from portfolio_site.crypto import InvalidToken
from portfolio_site.logs import redact, secret

from .brokers import Broker, BrokerError, BrokerRefused, BrokerUnavailable
from .models import BrokerAccount, BrokerConnection

# What a broker's API key or secret looks like: printable ASCII without spaces (they travel in HTTP headers), long
# enough that masking it in a message cannot mangle ordinary words.
CREDENTIAL = re.compile(r"[\x21-\x7e]{8,256}")

# connection id -> (what the adapter was built from, the adapter)
_adapters: dict[int, tuple[tuple[Any, ...], Broker]] = {}


def kind_config(kind: str) -> dict[str, Any]:
    try:
        config: dict[str, Any] = settings.TRADING_BROKER_KINDS[kind]
    except KeyError:
        raise ImproperlyConfigured(f"No broker kind {kind!r} in TRADING_BROKER_KINDS.") from None
    return config


def broker_for(connection: BrokerConnection) -> Broker:
    """The adapter of a connection, built once per process and again when the connection or its kind's options
    change. BrokerUnavailable when its kind is not configured here (an operator's fix, then it works again);
    BrokerRefused when its credentials cannot be decrypted (they must be set again)."""
    try:
        config = kind_config(connection.kind)
    except ImproperlyConfigured as error:
        raise BrokerUnavailable(str(error)) from None
    options = dict(config.get("OPTIONS") or {})
    built_from = (
        connection.updated_at,
        connection.credentials_set_at,
        connection.name,
        connection.kind,
        connection.environment,
        connection.base_url,
        config["BACKEND"],
        tuple(sorted(options.items())),
    )
    cached = _adapters.get(connection.pk)
    if cached is not None and cached[0] == built_from:
        return cached[1]
    arguments = {**options, "name": connection.name}
    if connection.is_remote:
        try:
            api_key, api_secret = connection.credentials()
        except InvalidToken:
            raise BrokerRefused(
                f"The credentials of {connection} cannot be decrypted with this server's ENCRYPTION_KEYS: set them "
                "again."
            ) from None
        arguments |= {"api_key": api_key, "api_secret": api_secret, "environment": connection.environment}
        if connection.base_url:
            arguments["base_url"] = connection.base_url
    adapter: Broker = import_string(config["BACKEND"])(**arguments)
    _adapters[connection.pk] = (built_from, adapter)
    return adapter


def order_account(*, portfolio: Portfolio, connection: BrokerConnection | None) -> BrokerAccount:
    """The account a new order of the portfolio goes to: its account at `connection`, or, when none is named, its
    only account at an active connection. ValidationError (on `connection`) when there is none to use, or several to
    choose from."""
    accounts = BrokerAccount.objects.filter(portfolio=portfolio, connection__is_active=True).select_related(
        "connection"
    )
    if connection is not None:
        if connection.kind not in settings.TRADING_BROKER_KINDS:
            raise ValidationError({"connection": f"{connection} is of a kind this server is not configured for."})
        if not connection.is_active:
            raise ValidationError({"connection": f"{connection} is inactive: no new orders go through it."})
        account = accounts.filter(connection=connection).first()
        if account is None:
            raise ValidationError(
                {"connection": f"Portfolio {portfolio} has no account at {connection}: Operations open one first."}
            )
        return account
    found = list(
        accounts.filter(connection__kind__in=list(settings.TRADING_BROKER_KINDS)).order_by("connection__name")[:2]
    )
    if not found:
        raise ValidationError(
            {
                "connection": f"Portfolio {portfolio} has no account at an active broker connection: Operations open "
                "one first."
            }
        )
    if len(found) > 1:
        raise ValidationError({"connection": f"Portfolio {portfolio} has accounts at several brokers: choose one."})
    return found[0]


def connection_save(
    *, connection: BrokerConnection, api_key: str | None = None, api_secret: str | None = None
) -> BrokerConnection:
    """Saves a new or changed connection, setting its credentials when given. The rules of every door:

    - a kind never changes (orders were placed through it as that kind), and is one this server is configured for;
    - the API key and secret are given together, only to a remote broker, each printable ASCII without spaces of 8
      to 256 characters; a remote broker's connection has them;
    - a connection that changes where it signs in (its environment or base URL) is given its credentials again:
      otherwise whoever may change a connection could point it at their own server and receive the stored secret;
    - a base URL is https, or http on this machine's loopback only (a local test server): the secret travels in
      the request headers.
    """
    stored = BrokerConnection.objects.filter(pk=connection.pk).first() if connection.pk is not None else None
    if stored is not None and stored.kind != connection.kind:
        raise ValidationError({"kind": "A connection's kind cannot change: add another connection."})
    if connection.kind not in settings.TRADING_BROKER_KINDS:
        raise ValidationError({"kind": f"This server is not configured for {connection.get_kind_display()}."})
    if (api_key is None) != (api_secret is None):
        missing = "api_secret" if api_secret is None else "api_key"
        raise ValidationError({missing: "Give the API key and secret together."})
    if connection.base_url:
        _check_base_url(connection.base_url)
    if api_key is not None and api_secret is not None:
        if not connection.is_remote:
            raise ValidationError({"api_key": "The paper broker takes no credentials."})
        for name, value in (("api_key", api_key), ("api_secret", api_secret)):
            if not CREDENTIAL.fullmatch(value.strip()):
                raise ValidationError(
                    {name: "Must be 8 to 256 printable characters without spaces, as the broker issued it."}
                )
        connection.set_credentials(api_key=api_key.strip(), api_secret=api_secret.strip())
    elif connection.is_remote and not connection.has_credentials:
        kind = connection.get_kind_display()
        raise ValidationError({"api_key": f"A connection to {kind} needs an API key and secret."})
    elif (
        connection.is_remote
        and stored is not None
        and (stored.environment, stored.base_url) != (connection.environment, connection.base_url)
    ):
        raise ValidationError(
            {
                "api_key": "Changing where a connection signs in (its environment or base URL) needs its API key and "
                "secret again."
            }
        )
    connection.full_clean()
    connection.save()
    return connection


def _check_base_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise ValidationError({"base_url": "A broker's base URL is https (http only on this machine's loopback)."})


def broker_account_save(*, account: BrokerAccount) -> BrokerAccount:
    """Saves a portfolio's account at a connection; its client is its portfolio's. An account stays with the
    portfolio it was opened for (its orders name it)."""
    if account.pk is not None:
        stored = BrokerAccount.objects.filter(pk=account.pk).values_list("portfolio_id", flat=True).first()
        if stored is not None and stored != account.portfolio_id:
            raise ValidationError({"portfolio": "An account stays with its portfolio: add another."})
    account.client_id = account.portfolio.client_id
    account.full_clean()
    account.save()
    return account


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


def connection_check(*, connection: BrokerConnection) -> CheckResult:
    """Asks the broker whether the connection works (reading the account, placing nothing), and records the answer
    on the connection (`last_checked_at`, `last_check_ok`, `last_check_message`)."""
    try:
        ok, message = True, broker_for(connection).check()
    except (BrokerError, ImproperlyConfigured) as error:
        ok, message = False, str(error)
    message = redacted(message, connection)[:500]
    # An update, not a save: a check changes neither the connection's history nor its adapter.
    BrokerConnection.objects.filter(pk=connection.pk).update(
        last_checked_at=timezone.now(), last_check_ok=ok, last_check_message=message
    )
    return CheckResult(ok=ok, message=message)


def redacted(text: str, connection: BrokerConnection) -> str:
    """`text` without the connection's credentials, should a broker ever echo them back: masked as every log line
    is (`portfolio_site.logs`), the credentials registered as this request's or job's secrets."""
    try:
        credentials = connection.credentials()
    except InvalidToken:
        return text  # nothing readable to echo
    for value in credentials:
        secret(value)
    return redact(text)


def may_read_checks(user: Any) -> bool:
    """Whether `user` reads what a connection's last check answered (the firm's account number, its buying power):
    those who may test connections."""
    return bool(user.has_perm("trading.check_brokerconnection"))
