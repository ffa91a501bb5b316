"""The model side of the change history: `TrackedHistory`, declared as `history = TrackedHistory(...)` on every
tracked model (the context it reads, door and user, is portfolio_site.history)."""

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import models
from simple_history.models import HistoricalRecords
from simple_history.utils import bulk_create_with_history

from portfolio_site.history import Door, current_door, history_user, is_suppressed

M = TypeVar("M", bound=models.Model)


class DoorHistoryModel(models.Model):
    """The abstract base of every historical model: the door the change came through."""

    history_door = models.CharField(
        "door", max_length=8, choices=Door.choices, blank=True, default=current_door, db_index=True
    )

    class Meta:
        abstract = True


class TrackedHistory(HistoricalRecords):
    """simple-history's HistoricalRecords with the door, this project's user rule and the import suppression.

    A save that only touched excluded fields (a login updating `last_login`) leaves no row: it changed nothing
    the history shows.
    """

    def __init__(self, *, excluded_fields: list[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("bases", [DoorHistoryModel])
        kwargs.setdefault("get_user", history_user)
        # No database constraint from the history tables to users: a historical row never blocks or slows a user's
        # deletion (which is itself recorded; simple-history then empties `history_user` on that user's changes).
        kwargs.setdefault("user_db_constraint", False)
        super().__init__(excluded_fields=excluded_fields, **kwargs)

    def get_extra_fields(self, model: type[models.Model], fields: dict[str, Any]) -> dict[str, Any]:
        extra: dict[str, Any] = super().get_extra_fields(model, fields)
        # The historical rows of a scoped model are scoped as the model's rows are: its QuerySet (visible_to along
        # the same client path, or reference data) is the historical model's default manager's too, so a door or
        # selector reading them directly is held to the visibility contract (portfolio_site.scoping).
        queryset_class = getattr(model._default_manager, "_queryset_class", None)
        if queryset_class is not None and callable(getattr(queryset_class, "visible_to", None)):
            extra["objects"] = queryset_class.as_manager()
        return extra

    def post_save(self, instance: Any, created: bool, using: str | None = None, **kwargs: Any) -> None:
        if is_suppressed():
            return
        update_fields = kwargs.get("update_fields")
        if update_fields and not created and set(update_fields) <= set(self.excluded_fields):
            return
        super().post_save(instance, created, using=using, **kwargs)

    def m2m_changed(self, instance: Any, action: str, attr: str, pk_set: Any, reverse: bool, **kwargs: Any) -> None:
        if is_suppressed():
            return
        if not reverse:
            super().m2m_changed(instance, action, attr, pk_set, reverse, **kwargs)
            return
        # Changed from the other side (`group.user_set.add(user)`): `instance` is the group, which has no history;
        # the tracked rows whose relation changed are those in `pk_set`, or, for a clear, those held just before.
        if action == "pre_clear":
            instance._history_cleared = list(self._tracked_holders(kwargs["sender"], instance))
        elif action in ("post_add", "post_remove", "post_clear"):
            changed = pk_set if action != "post_clear" else getattr(instance, "_history_cleared", [])
            for tracked in self.cls._default_manager.filter(pk__in=list(changed)):
                self.create_historical_record(tracked, "~")

    def _tracked_holders(self, through: Any, other: Any) -> Any:
        """The keys of the tracked rows the through table links to `other`."""
        own = next(f.name for f in through._meta.fields if f.is_relation and f.related_model is self.cls)
        theirs = next(f.name for f in through._meta.fields if f.is_relation and isinstance(other, f.related_model))
        return through.objects.filter(**{theirs: other.pk}).values_list(own, flat=True)

    def post_delete(self, instance: Any, using: str | None = None, **kwargs: Any) -> None:
        if is_suppressed():
            return
        super().post_delete(instance, using=using, **kwargs)

    def get_history_user(self, instance: Any) -> Any:
        # simple-history looks at its own thread-local request first; the door's binding is the one source here.
        explicit = getattr(instance, "_history_user", None)
        return explicit if explicit is not None else history_user(instance)


def bulk_create_tracked(model: type[M], objs: Sequence[M], *, batch_size: int | None = None) -> list[M]:
    """`bulk_create` that records each row's creation as one historical row (simple-history's bulk helper: two
    INSERTs per batch, not a save and a signal per row), with the door and user bound now; inside an import
    (`history.suppressed()`) a plain `bulk_create`, the batch being the record."""
    if is_suppressed():
        return model._default_manager.bulk_create(objs, batch_size=batch_size)
    return bulk_create_with_history(objs, model, batch_size=batch_size)  # type: ignore[no-any-return]
