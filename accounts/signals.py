"""Who holds what changed: the cached grants (`accounts.grants`) of whoever it concerns are looked up again."""

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save

from accounts.grants import grants_changed
from accounts.models import User

# What a user holds: m2m_changed comes from either side (user.groups.add(g) and g.user_set.add(user) alike), with
# the through model as sender; only the users named change.
USER_RELATIONS = (User.groups.through, User.user_permissions.through)
# What a group grants: everyone in it changes.
GROUP_RELATIONS = (Group.permissions.through,)
# Deleting one of these removes its rows of the relations above by cascade, which sends no m2m_changed; renaming a
# group changes a role.
GRANTING_MODELS = (Group, Permission)
CHANGES = {"post_add", "post_remove", "post_clear"}


def _user_relation_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[Any] | None, **kwargs: Any
) -> None:
    if action not in CHANGES:
        return
    if not reverse:  # the user's side: this user
        grants_changed([instance.pk])
    elif pk_set is not None:  # the group's or permission's side: the users named
        grants_changed(pk_set)
    else:  # cleared from the group's or permission's side: whoever they were
        grants_changed()


def _group_relation_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action in CHANGES:
        grants_changed()


def _model_changed(sender: Any, **kwargs: Any) -> None:
    grants_changed()


def connect() -> None:
    for user_relation in USER_RELATIONS:
        uid = f"grants:{user_relation._meta.label}"
        m2m_changed.connect(_user_relation_changed, sender=user_relation, dispatch_uid=uid)
    for group_relation in GROUP_RELATIONS:
        uid = f"grants:{group_relation._meta.label}"
        m2m_changed.connect(_group_relation_changed, sender=group_relation, dispatch_uid=uid)
    for model in GRANTING_MODELS:
        post_save.connect(_model_changed, sender=model, dispatch_uid=f"grants:save:{model._meta.label}")
        post_delete.connect(_model_changed, sender=model, dispatch_uid=f"grants:delete:{model._meta.label}")
    # Data migrations grant roles through historical models: after any migrate, look everything up again.
    post_migrate.connect(_model_changed, dispatch_uid="grants:migrate")
