"""The CSV row formats of clients and portfolios for the import engine, under the rules of clients.services; and
`PortfolioIndex`, how the rows of the other kinds (transactions, allocations) name a portfolio.

Clients are batched (see portfolio_site.imports.upsert); memory holds a batch and the emails seen, never the file.
Portfolios are few per client and go through `portfolio_create` / `portfolio_update` row by row.
"""

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Lower
from django.utils import timezone

from portfolio_site.errors import ConflictError
from portfolio_site.imports import parsing
from portfolio_site.imports.formats import Column, ImportFormat, RowError, register
from portfolio_site.imports.upsert import PendingRow, UpsertFormat, cells, validation_messages
from portfolio_site.models import NOTES_MAX_LENGTH

from .models import Client, Portfolio, PortfolioKind
from .scope import ClientScope
from .services import (
    CACHE_NAMESPACE,
    NOT_YOURS,
    client_advisor_check,
    portfolio_create,
    portfolio_lock,
    portfolio_update,
    portfolios_lock,
)

COMPARED = ("name", "advisor_id", "base_currency", "phone", "is_active", "notes")  # the advisor by id: no query


@register
class ClientFormat(UpsertFormat):
    kind = "clients"
    permissions = ("clients.add_client", "clients.change_client")
    description = (
        "clients, created or updated by email (the row is the whole record: an empty optional cell means "
        "its default). The advisor must be an active staff member; an advisor importing may only name "
        "themselves and only change the clients they advise."
    )
    columns = (
        Column("email", parsing.email, help="the client's email address (the natural key)"),
        Column("name", parsing.text(200), help="full name"),
        Column("advisor", parsing.email, help="email of the responsible staff member"),
        Column("base_currency", parsing.currency, help="ISO 4217 code the client reports in"),
        Column("phone", parsing.text(32), required=False, help="digits, spaces and - ( ) . /, optionally +"),
        Column("is_active", parsing.boolean, required=False, help="true or false (default true)"),
        Column("notes", parsing.text(NOTES_MAX_LENGTH), required=False, help="free text"),
    )

    model = Client
    compared = COMPARED
    saved = ("name", "advisor", "base_currency", "phone", "is_active", "notes")
    cache_namespaces = (CACHE_NAMESPACE,)
    # The advisor was looked up by the row already.
    clean_exclude = ("advisor",)

    def prepare(self) -> None:
        super().prepare()
        actor = self.run.actor
        self.scope = ClientScope.of(actor)
        self.advisors: dict[str, Any] = {}
        self.seen: dict[str, int] = {}

    def build(self, line: int, values: dict[str, Any]) -> Client:
        if not self.scope.may_hold_clients:
            raise RowError("row", NOT_YOURS)
        email = values["email"]
        if email in self.seen:
            raise RowError("email", f"{email} is already on line {self.seen[email]}")
        advisor = self._advisor(values["advisor"])
        if advisor is None:
            raise RowError("advisor", f"no staff member with the email {values['advisor']}")
        self.seen[email] = line
        return Client(
            email=email,
            name=values["name"],
            advisor=advisor,
            base_currency=values["base_currency"],
            phone=values["phone"] or "",
            is_active=True if values["is_active"] is None else values["is_active"],
            notes=values["notes"] or "",
        )

    def _advisor(self, email: str) -> Any:
        if email not in self.advisors:
            self.advisors[email] = get_user_model().objects.filter(email__iexact=email).first()
        return self.advisors[email]

    def natural_key(self, instance: Client) -> str:
        return instance.email

    def existing(self, rows: list[PendingRow]) -> dict[Hashable, Any]:
        emails = [row.instance.email for row in rows]
        return {
            client.email.lower(): client
            for client in self.locked(Client.objects.alias(email_lower=Lower("email")).filter(email_lower__in=emails))
        }

    def _save(self, creates: list[Any], updates: list[Any]) -> None:
        super()._save(creates, updates)
        if creates and self.run.may_write:
            # As client_create does: a new client opens with its "Main" portfolio, so that a file of
            # movements naming only the client has a portfolio to go to.
            new = Client.objects.filter(email__in=[client.email for client in creates], portfolios__isnull=True)
            today = timezone.localdate()
            Portfolio.objects.bulk_create(
                Portfolio(
                    client_id=pk,
                    name=Portfolio.DEFAULT_NAME,
                    base_currency=currency,
                    opened_on=today,
                    import_batch=self.run.batch,
                )
                for pk, currency in new.values_list("pk", "base_currency")
            )

    def refusal(self, row: PendingRow, old: Client | None) -> tuple[str, str] | None:
        """What client_create and client_update refuse: acting outside one's clients, an inactive advisor."""
        new = row.instance
        if old is not None and not self.scope.allows(old):
            return "email", "a client with this email exists and is not one you may act on"
        if old is None or old.advisor_id != new.advisor_id:
            try:
                client_advisor_check(actor=self.run.actor, advisor=new.advisor)
            except (ValidationError, PermissionDenied) as error:
                return "advisor", " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        return None

    @classmethod
    def exported(cls, rows: QuerySet[Client]) -> QuerySet[Client]:
        return rows.select_related("advisor").order_by("email")

    @classmethod
    def export_row(cls, client: Client) -> dict[str, str]:
        return {
            "email": client.email,
            "name": client.name,
            "advisor": client.advisor.email,
            "base_currency": client.base_currency,
            "phone": client.phone,
            "is_active": "true" if client.is_active else "false",
            "notes": client.notes,
        }


# --- Portfolios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortfolioRef:
    """A portfolio as the rows of a file name it."""

    id: int
    client_id: int
    email: str
    name: str

    @property
    def key_owner(self) -> str:
        """Who a row's import key says the row belongs to: the client, as every key said before clients had
        several portfolios, so that a file imported then (its rows now in the client's Main portfolio) still
        reads as imported. Keys are unique per portfolio and a row's occurrences are counted per portfolio,
        so identical rows in two portfolios stay two rows without the portfolio in the key."""
        return str(self.client_id)


# How the rows of a file of movements name their portfolio (see PortfolioIndex.resolve): the client first, as
# before clients had several portfolios, and the portfolio's own columns last, so that files written for one
# portfolio per client keep their meaning and a reader of exports finds the earlier columns where they were.
CLIENT_COLUMN = Column(
    "client",
    parsing.email,
    required=False,
    help="the client's email address; required unless custodian and account_number name the portfolio",
)
PORTFOLIO_COLUMNS = (
    Column(
        "portfolio",
        parsing.text(100),
        required=False,
        help="the portfolio's name within the client; may be left out when the client has a single portfolio",
    ),
    Column("custodian", parsing.text(100), required=False, help="with account_number, another way to name it"),
    Column("account_number", parsing.text(64), required=False, help="the portfolio's account number at custodian"),
)


class PortfolioIndex:
    """The clients and portfolios an actor may see, loaded once (a few per client), and how a row of a file of
    movements names its portfolio: by the client's email and the portfolio's name, by custodian and account
    number, or by the client alone when the client has a single portfolio. Touches no database after loading,
    so that a parsing thread may use it."""

    def __init__(self, actor: Any) -> None:
        self.client_ids: dict[str, int] = dict(
            Client.objects.visible_to(actor).order_by().values_list("email", "id").iterator()
        )
        self.by_name: dict[tuple[int, str], PortfolioRef] = {}
        self.by_account: dict[tuple[str, str], PortfolioRef] = {}
        self.by_client: dict[int, list[PortfolioRef]] = defaultdict(list)
        rows = Portfolio.objects.visible_to(actor).order_by("client_id", "pk")
        for pk, client_id, email, name, custodian, account_number in rows.values_list(
            "pk", "client_id", "client__email", "name", "custodian", "account_number"
        ).iterator():
            ref = PortfolioRef(pk, client_id, email, name)
            self.by_client[client_id].append(ref)
            self.by_name[client_id, name.lower()] = ref
            if account_number:
                self.by_account[custodian, account_number] = ref

    def resolve(self, values: dict[str, Any]) -> PortfolioRef:
        """The portfolio a row names (its cells `client`, `portfolio`, `custodian`, `account_number`); RowError
        naming the cell at fault otherwise."""
        email = values["client"]
        client_id = None
        if email is not None:
            client_id = self.client_ids.get(email)
            if client_id is None:
                raise RowError("client", f"no client with the email {email} (or not one you may see)")
        name, custodian, account = values.get("portfolio"), values.get("custodian"), values.get("account_number")
        if custodian is not None or account is not None:
            return self._by_account(client_id, name, custodian, account)
        if client_id is None:
            raise RowError("client", "required, unless custodian and account_number name the portfolio")
        if name is not None:
            ref = self.by_name.get((client_id, name.lower()))
            if ref is None:
                raise RowError("portfolio", f"{email} has no portfolio named {name!r}")
            return ref
        portfolios = self.by_client.get(client_id, [])
        if len(portfolios) == 1:
            return portfolios[0]
        if not portfolios:
            raise RowError("portfolio", f"{email} has no portfolio: create one first")
        names = ", ".join(ref.name for ref in portfolios)
        raise RowError("portfolio", f"{email} has several portfolios ({names}): name one")

    def _by_account(
        self, client_id: int | None, name: str | None, custodian: str | None, account: str | None
    ) -> PortfolioRef:
        if custodian is None:
            raise RowError("custodian", "required with account_number (account numbers are unique per custodian)")
        if account is None:
            raise RowError("account_number", "required with custodian")
        ref = self.by_account.get((custodian, account))
        if ref is None:
            raise RowError(
                "account_number",
                f"no portfolio with the account number {account} at {custodian} (or not one you may see)",
            )
        if client_id is not None and ref.client_id != client_id:
            raise RowError("account_number", f"the account {account} at {custodian} is a portfolio of {ref.email}")
        if name is not None and name.lower() != ref.name.lower():
            raise RowError("portfolio", f"the account {account} at {custodian} is the portfolio {ref.name!r}")
        return ref


@dataclass
class PortfolioRefusals:
    """The portfolios an import's lock refused, each with the column and reason its rows are refused with: those
    the actor may no longer see (refused before anything is said of their rows), and those closed (whose rows
    already imported still count as skipped)."""

    hidden: dict[int, tuple[str, str]]
    closed: dict[int, tuple[str, str]]


def portfolios_lock_for_import(*, actor: Any, portfolio_ids: set[int]) -> PortfolioRefusals:
    """Locks the portfolios a file's rows name through the services' own lock (clients.services.portfolios_lock,
    primary-key order), held to the end of the import's transaction; the refused ones are returned, not raised,
    so that the import refuses their rows and goes on with the others."""
    refusals = PortfolioRefusals({}, {})
    if not portfolio_ids:
        return refusals
    try:
        portfolios_lock(actor=actor, portfolio_ids=portfolio_ids)
        return refusals
    except (PermissionDenied, ConflictError):
        pass
    # Some portfolio was refused, which the lock does not say: lock them one by one, in the same order, to tell
    # which (a refusal is raised after its query, so the transaction goes on; those locked stay locked).
    for pk in sorted(portfolio_ids):
        try:
            portfolio_lock(actor=actor, portfolio_id=pk)
        except PermissionDenied as error:
            refusals.hidden[pk] = ("client", str(error))
        except ConflictError as error:
            refusals.closed[pk] = ("portfolio", error.message)
    return refusals


# Where a service's refusal points, in the file's columns.
_PORTFOLIO_COLUMNS = {
    name: name
    for name in (
        "client",
        "name",
        "kind",
        "custodian",
        "account_number",
        "base_currency",
        "opened_on",
        "closed_on",
        "notes",
    )
}


@register
class PortfolioFormat(ImportFormat):
    """Row by row through portfolio_create and portfolio_update: a client has a few portfolios, not millions,
    and the services' own checks (visibility, names unique per client, account numbers per custodian) apply."""

    kind = "portfolios"
    model = Portfolio
    permissions = ("clients.add_portfolio", "clients.change_portfolio")
    description = (
        "clients' portfolios (accounts), created or updated by client email and name, whatever the case (the row "
        "is the whole record: an empty optional cell means its default; an empty opened_on keeps the stored date). "
        "A portfolio with closed_on accepts no new movements."
    )
    columns = (
        Column("client", parsing.email, help="the client's email address"),
        Column("name", parsing.text(100), help="the portfolio's name, unique per client (with client: the key)"),
        Column("kind", parsing.choice(PortfolioKind.values), required=False, help=", ".join(PortfolioKind.values)),
        Column("custodian", parsing.text(100), required=False, help="who keeps the account"),
        Column("account_number", parsing.text(64), required=False, help="the custodian's number, unique per custodian"),
        Column("base_currency", parsing.currency, required=False, help="ISO 4217 code (default: the client's)"),
        Column("opened_on", parsing.iso_date, required=False, help="YYYY-MM-DD (default: today)"),
        Column("closed_on", parsing.iso_date, required=False, help="YYYY-MM-DD; empty while open"),
        Column("notes", parsing.text(NOTES_MAX_LENGTH), required=False, help="free text"),
    )

    def prepare(self) -> None:
        # Only clients the actor may see can be named; the rest read as unknown.
        self.client_ids = dict(Client.objects.visible_to(self.run.actor).order_by().values_list("email", "id"))
        self.seen: dict[tuple[int, str], int] = {}
        self.rows: list[tuple[int, dict[str, Any], int]] = []

    def add(self, line: int, values: dict[str, Any]) -> None:
        client_id = self.client_ids.get(values["client"])
        if client_id is None:
            raise RowError("client", f"no client with the email {values['client']} (or not one you may see)")
        key = (client_id, values["name"].lower())
        if key in self.seen:
            raise RowError(
                "name", f"{values['client']}'s portfolio {values['name']!r} is already on line {self.seen[key]}"
            )
        self.seen[key] = line
        self.rows.append((line, values, client_id))

    def check(self) -> None:
        """Writes each row through the services, which are the check: a refusal is only known by trying. It runs
        even when a row was refused already, so that one run lists every problem; the engine then rolls back
        everything (as it does a dry run), unless skip_invalid."""
        clients = Client.objects.in_bulk({client_id for _, _, client_id in self.rows})
        existing = {
            (portfolio.client_id, portfolio.name.lower()): portfolio
            for portfolio in Portfolio.objects.filter(client_id__in=clients)
        }
        for line, values, client_id in self.rows:
            client = clients[client_id]
            fields: dict[str, Any] = {
                "name": values["name"],
                "kind": values["kind"] or Portfolio.Kind.OTHER,
                "custodian": values["custodian"] or "",
                "account_number": values["account_number"] or "",
                "base_currency": values["base_currency"] or client.base_currency,
                "closed_on": values["closed_on"],
                "notes": values["notes"] or "",
            }
            if values["opened_on"] is not None:
                fields["opened_on"] = values["opened_on"]
            old = existing.get((client_id, values["name"].lower()))
            try:
                # Each row in its own savepoint, so that one refusal leaves the others to be checked (and, with
                # skip_invalid, written); without skip_invalid any refusal fails the whole run.
                with transaction.atomic():
                    if old is None:
                        portfolio_create(actor=self.run.actor, client=client, import_batch=self.run.batch, **fields)
                        self.run.created += 1
                    elif all(getattr(old, name) == value for name, value in fields.items()):
                        self.run.skipped += 1
                    else:
                        portfolio_update(actor=self.run.actor, portfolio=old, **fields)
                        self.run.updated += 1
            except (ValidationError, PermissionDenied, ConflictError) as error:
                self.run.reject(line, *_portfolio_refusal(error), cells(self.columns, values))

    def write(self) -> None:
        """Nothing left to do: `check` wrote the rows."""

    @classmethod
    def exported(cls, rows: QuerySet[Portfolio]) -> QuerySet[Portfolio]:
        return rows.select_related("client").order_by("client__email", "name", "pk")

    @classmethod
    def export_row(cls, portfolio: Portfolio) -> dict[str, str]:
        return {
            "client": portfolio.client.email,
            "name": portfolio.name,
            "kind": portfolio.kind,
            "custodian": portfolio.custodian,
            "account_number": portfolio.account_number,
            "base_currency": portfolio.base_currency,
            "opened_on": portfolio.opened_on.isoformat(),
            "closed_on": portfolio.closed_on.isoformat() if portfolio.closed_on else "",
            "notes": portfolio.notes,
        }


def _portfolio_refusal(error: Exception) -> tuple[str, str]:
    if isinstance(error, ConflictError):
        return _PORTFOLIO_COLUMNS.get(error.field or "", "row"), error.message
    if isinstance(error, PermissionDenied):
        return "client", str(error)
    assert isinstance(error, ValidationError)
    return validation_messages(error, _PORTFOLIO_COLUMNS)[0]
