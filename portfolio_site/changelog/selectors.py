"""The history changelist's entries: every tracked model's historical rows and the imports' batches, merged by date.

Each source is read with a fixed number of queries, whatever the number of rows: a count, the page's rows (their
users and related rows joined, the previous record's id annotated) and the previous records (for before → after).
A page further down costs more rows, never more queries: each source gives at most `offset + limit` rows to the
merge. Every source is scoped first: the viewer's view permission on the model, then, for client-owned models,
the clients the viewer may see (clients.scope), as the admin and the API scope the objects themselves.
"""

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import OuterRef, Subquery
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from simple_history.models import HistoricalRecords
from simple_history.utils import get_m2m_reverse_field_name

from clients.models import Client
from clients.scope import ClientScope
from portfolio_site.imports.models import ImportBatch
from portfolio_site.scoping import owner_path

IMPORT_BATCHES = "imports.importbatch"
KINDS = {"+": "Created", "~": "Changed", "-": "Deleted"}
# Long values (notes) are cut in the summary; the object's history page has them whole.
SHOWN_CHARACTERS = 80


@dataclass(frozen=True)
class Filters:
    model: str = ""  # a tracked model's label ("clients.client"), or IMPORT_BATCHES
    user_email: str = ""
    door: str = ""
    since: date | None = None
    until: date | None = None
    # One client's changes: its own and those of the rows it owns (portfolios, allocations, dividends), not reference
    # data nor import batches, which belong to no one client.
    client_id: int | None = None


@dataclass
class Entry:
    when: datetime
    model: str
    model_name: str
    object_id: Any
    object_repr: str
    kind: str
    door: str
    user: Any
    changes: list[str] = field(default_factory=list)
    url: str = ""
    order: tuple[Any, ...] = ()


def tracked_models() -> list[type[models.Model]]:
    """The models whose changes the history keeps (each declares `history = TrackedHistory(...)`)."""
    return [
        model
        for model in apps.get_models()
        if hasattr(model._meta, "simple_history_manager_attribute")
        and any(f.name == "history_door" for f in model.history.model._meta.fields)  # type: ignore[attr-defined]
    ]


def sources(user: Any) -> dict[str, str]:
    """The sources the viewer may read, label → name: the models they may view, and import batches."""
    found = {
        model._meta.label_lower: str(model._meta.verbose_name_plural).capitalize()
        for model in tracked_models()
        if user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")
    }
    if user.has_perm("imports.view_importbatch"):
        found[IMPORT_BATCHES] = "Import batches (one entry per imported file)"
    return dict(sorted(found.items(), key=lambda item: item[1]))


def _dated(queryset: models.QuerySet[Any], filters: Filters, field_name: str) -> models.QuerySet[Any]:
    zone = timezone.get_current_timezone()
    if filters.since is not None:
        queryset = queryset.filter(**{f"{field_name}__gte": datetime.combine(filters.since, time.min, zone)})
    if filters.until is not None:
        queryset = queryset.filter(**{f"{field_name}__lt": datetime.combine(filters.until, time.max, zone)})
    return queryset


def _scoped_history(model: type[models.Model], user: Any) -> models.QuerySet[Any]:
    records = model.history.all()  # type: ignore[attr-defined]
    path = owner_path(model)
    if path is None:
        return records  # type: ignore[no-any-return]
    if path == "":
        # A client's own records by the client as it is now (as its change page is scoped), not by the advisor
        # each record names; the rest by their client, through the one scope.
        return records.filter(id__in=Client.objects.visible_to(user).values("pk"))  # type: ignore[no-any-return]
    return records.filter(ClientScope.of(user).filter(through=path))  # type: ignore[no-any-return]


def _history_source(model: type[models.Model], user: Any, filters: Filters) -> models.QuerySet[Any]:
    records = _scoped_history(model, user)
    if filters.client_id is not None:
        records = records.filter(**{owner_path(model) or "id": filters.client_id})  # "" is the client itself
    if filters.user_email:
        records = records.filter(history_user__email__iexact=filters.user_email)
    if filters.door:
        records = records.filter(history_door=filters.door)
    return _dated(records, filters, "history_date")


def _batch_source(filters: Filters) -> models.QuerySet[ImportBatch]:
    # Only runs that wrote something: a dry run or a failed file was rolled back and changed nothing.
    batches = ImportBatch.objects.filter(outcome=ImportBatch.Outcome.SUCCEEDED)
    if filters.user_email:
        batches = batches.filter(user__email__iexact=filters.user_email)
    if filters.door:
        batches = batches.filter(door=filters.door)
    return _dated(batches, filters, "started_at")


def _short(value: Any) -> str:
    text = "—" if value in (None, "") else str(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"


def _instance(record: Any, model: type[models.Model]) -> models.Model:
    """The object as the record saw it, for its `__str__`, with the related rows the record's query joined.

    Built here rather than by simple-history's `record.instance`, which reads the fields the history leaves out
    (`updated_at`) from the live row: a query per entry.
    """
    instance = model(
        **{f.attname: getattr(record, f.attname) for f in model._meta.concrete_fields if hasattr(record, f.attname)}
    )
    for model_field in model._meta.concrete_fields:
        if not isinstance(model_field, models.ForeignKey):
            continue
        try:
            history_field = record._meta.get_field(model_field.name)
        except FieldDoesNotExist:  # left out of the history
            continue
        if history_field.is_cached(record):
            model_field.set_cached_value(instance, history_field.get_cached_value(record))
    return instance


def _url(name: str, *args: Any) -> str:
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def _history_entries(
    model: type[models.Model], records: list[Any], previous: dict[int, Any], related: dict[str, dict[int, list[str]]]
) -> Iterator[Entry]:
    opts = model._meta
    for record in records:
        changes: list[str] = []
        before = previous.get(record.previous_id) if record.history_type == "~" else None
        if before is not None:
            # Many-to-many fields (a user's roles) from the rows read for the whole page, not a query per entry.
            delta = record.diff_against(before, excluded_fields=set(related), foreign_keys_are_objs=False)
            changes = [f"{c.field}: {_short(c.old)} → {_short(c.new)}" for c in delta.changes]
            for name, by_record in related.items():
                old, new = by_record.get(before.history_id, []), by_record.get(record.history_id, [])
                if old != new:
                    changes.append(f"{name}: {_short(', '.join(old))} → {_short(', '.join(new))}")
        yield Entry(
            when=record.history_date,
            model=opts.label_lower,
            model_name=str(opts.verbose_name).capitalize(),
            object_id=record.id,
            object_repr=str(_instance(record, model)),
            kind=KINDS.get(record.history_type, record.history_type),
            door=record.get_history_door_display(),
            user=record.history_user,
            changes=changes,
            url=_url(f"admin:{opts.app_label}_{opts.model_name}_history", record.id),
            order=(record.history_date, opts.label_lower, record.history_id),
        )


def _read_history(model: type[models.Model], queryset: models.QuerySet[Any], limit: int) -> list[Entry]:
    history_model = queryset.model
    relations = [f.name for f in history_model._meta.fields if f.is_relation and f.name != "history_relation"]
    earlier = history_model.objects.filter(id=OuterRef("id"), history_id__lt=OuterRef("history_id"))
    records = list(
        queryset.select_related(*relations)
        .annotate(previous_id=Subquery(earlier.order_by("-history_id").values("history_id")[:1]))
        .order_by("-history_date", "-history_id")[:limit]
    )
    wanted = [r.previous_id for r in records if r.history_type == "~" and r.previous_id is not None]
    previous = {r.history_id: r for r in history_model.objects.filter(history_id__in=wanted)} if wanted else {}
    related = _many_to_many(history_model, [r.history_id for r in records] + wanted)
    return list(_history_entries(model, records, previous, related))


def _many_to_many(history_model: type[models.Model], history_ids: list[int]) -> dict[str, dict[int, list[str]]]:
    """Each tracked many-to-many field's related objects, by historical record: one query per field."""
    found: dict[str, dict[int, list[str]]] = {}
    for m2m_field in getattr(history_model, "_history_m2m_fields", []):
        rows_model = HistoricalRecords.m2m_models[m2m_field]
        target = get_m2m_reverse_field_name(m2m_field)
        by_record: dict[int, list[str]] = {}
        for row in rows_model.objects.filter(history_id__in=history_ids).select_related(target):
            by_record.setdefault(row.history_id, []).append(str(getattr(row, target)))
        found[m2m_field.name] = {history_id: sorted(names) for history_id, names in by_record.items()}
    return found


def _read_batches(queryset: models.QuerySet[ImportBatch], limit: int) -> list[Entry]:
    entries = []
    for batch in queryset.select_related("user").order_by("-started_at", "-id")[:limit]:
        entries.append(
            Entry(
                when=batch.started_at,
                model=IMPORT_BATCHES,
                model_name="Import batch",
                object_id=batch.pk,
                object_repr=f"{batch.kind} from {batch.file_name}",
                kind="Imported",
                door=batch.get_door_display(),
                user=batch.user,
                changes=[
                    f"{batch.rows_created} created, {batch.rows_updated} updated, {batch.rows_skipped} unchanged "
                    f"of {batch.rows_read} rows (each stored row points at this batch)"
                ],
                url=_url("admin:imports_importbatch_change", batch.pk),
                order=(batch.started_at, IMPORT_BATCHES, batch.pk),
            )
        )
    return entries


@dataclass
class Page:
    entries: list[Entry]
    count: int


def changes_page(*, user: Any, filters: Filters, offset: int, limit: int) -> Page:
    """One page of the changes the viewer may see, newest first, and how many there are in all."""
    allowed = sources(user)
    labels = [filters.model] if filters.model else list(allowed)
    labels = [label for label in labels if label in allowed]
    by_label = {model._meta.label_lower: model for model in tracked_models()}
    if filters.client_id is not None:
        labels = [label for label in labels if label in by_label and owner_path(by_label[label]) is not None]
    count = 0
    lists: list[Iterable[Entry]] = []
    for label in labels:
        if label == IMPORT_BATCHES:
            batches = _batch_source(filters)
            count += batches.count()
            lists.append(_read_batches(batches, offset + limit))
        else:
            model = by_label[label]
            records = _history_source(model, user, filters)
            count += records.count()
            lists.append(_read_history(model, records, offset + limit))
    merged = heapq.merge(*lists, key=lambda entry: entry.order, reverse=True)
    return Page(entries=list(itertools.islice(merged, offset, offset + limit)), count=count)
