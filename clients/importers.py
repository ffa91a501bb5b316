"""The CSV row format of clients for the import engine: an upsert by email, under the rules of clients.services.

Batched (see portfolio_site.imports.upsert); memory holds a batch and the emails seen, never the file.
"""

from collections.abc import Hashable, Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models.functions import Lower

from accounts.roles import is_advisor, sees_all_clients
from portfolio_site.imports import parsing
from portfolio_site.imports.engine import Column, RowError, register
from portfolio_site.imports.upsert import BATCH_ROWS, PendingRow, UpsertFormat
from portfolio_site.models import NOTES_MAX_LENGTH

from .models import Client
from .services import CACHE_NAMESPACE, NOT_YOURS, client_advisor_check

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
        self.may_act = sees_all_clients(actor) or is_advisor(actor)
        self.advisors: dict[str, Any] = {}
        self.seen: dict[str, int] = {}

    def build(self, line: int, values: dict[str, Any]) -> Client:
        if not self.may_act:
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
            for client in Client.objects.alias(email_lower=Lower("email")).filter(email_lower__in=emails)
        }

    def refusal(self, row: PendingRow, old: Client | None) -> tuple[str, str] | None:
        """What client_create and client_update refuse: acting outside one's clients, an inactive advisor."""
        new = row.instance
        if old is not None and not old.is_visible_to(self.run.actor):
            return "email", "a client with this email exists and is not one you may act on"
        if old is None or old.advisor_id != new.advisor_id:
            try:
                client_advisor_check(actor=self.run.actor, advisor=new.advisor)
            except (ValidationError, PermissionDenied) as error:
                return "advisor", " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        return None

    @classmethod
    def export_rows(cls) -> Iterator[dict[str, str]]:
        clients = Client.objects.select_related("advisor").order_by("email")
        for client in clients.iterator(chunk_size=BATCH_ROWS):
            yield {
                "email": client.email,
                "name": client.name,
                "advisor": client.advisor.email,
                "base_currency": client.base_currency,
                "phone": client.phone,
                "is_active": "true" if client.is_active else "false",
                "notes": client.notes,
            }
