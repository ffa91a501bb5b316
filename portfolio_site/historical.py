"""The model side of the change history: `TrackedHistory`, declared as `history = TrackedHistory(...)` on every
tracked model (the context it reads, door and user, is portfolio_site.history)."""

from typing import Any

from django.db import models
from simple_history.models import HistoricalRecords

from portfolio_site.history import Door, current_door, history_user, is_suppressed


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
        # The user may be deleted later; the history must stay (and keep naming who it was, by id).
        kwargs.setdefault("user_db_constraint", False)
        super().__init__(excluded_fields=excluded_fields, **kwargs)

    def post_save(self, instance: Any, created: bool, using: str | None = None, **kwargs: Any) -> None:
        if is_suppressed():
            return
        update_fields = kwargs.get("update_fields")
        if update_fields and not created and set(update_fields) <= set(self.excluded_fields):
            return
        super().post_save(instance, created, using=using, **kwargs)

    def post_delete(self, instance: Any, using: str | None = None, **kwargs: Any) -> None:
        if is_suppressed():
            return
        super().post_delete(instance, using=using, **kwargs)

    def get_history_user(self, instance: Any) -> Any:
        # simple-history looks at its own thread-local request first; the door's binding is the one source here.
        explicit = getattr(instance, "_history_user", None)
        return explicit if explicit is not None else history_user(instance)
