"""Who holds what changed: every user's cached grants (`accounts.grants`) are looked up again."""

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save

from accounts.grants import grants_changed
from accounts.models import User

# The relations that say who holds what; m2m_changed comes from either side of each (user.groups.add(g) and
# g.user_set.add(user) alike), with the through model as sender.
GRANTING_RELATIONS = (User.groups.through, User.user_permissions.through, Group.permissions.through)
# Deleting one of these removes its rows of the relations above by cascade, which sends no m2m_changed; renaming a
# group changes a role.
GRANTING_MODELS = (Group, Permission)


def _relation_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action in {"post_add", "post_remove", "post_clear"}:
        grants_changed()


def _model_changed(sender: Any, **kwargs: Any) -> None:
    grants_changed()


def connect() -> None:
    for relation in GRANTING_RELATIONS:
        m2m_changed.connect(_relation_changed, sender=relation, dispatch_uid=f"grants:{relation._meta.label}")
    for model in GRANTING_MODELS:
        post_save.connect(_model_changed, sender=model, dispatch_uid=f"grants:save:{model._meta.label}")
        post_delete.connect(_model_changed, sender=model, dispatch_uid=f"grants:delete:{model._meta.label}")
    # Data migrations grant roles through historical models: after any migrate, look everything up again.
    post_migrate.connect(_model_changed, dispatch_uid="grants:migrate")
