"""Staff roles: Django groups with model permissions, granted by each app's own data migration.

Who may see which client is the clients app's rule (`clients.scope.ClientScope`), read from these roles.
"""

from enum import StrEnum
from typing import Any

from django.contrib.auth.management import create_permissions


class Role(StrEnum):
    ADVISORS = "Advisors"
    OPERATIONS = "Operations"
    AUDITORS = "Auditors"


def role_names(user: Any) -> frozenset[str]:
    """The names of the user's groups: a saved user's from their cached grants (`accounts.grants`), another
    actor's (the command line's) looked up once per object."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    if getattr(user, "pk", None) is not None:
        from accounts.grants import grants  # grants reads the cache, which this module must not need to import

        return grants(user).roles
    cached = getattr(user, "_role_names_cache", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        user._role_names_cache = cached
    return cached


def is_advisor(user: Any) -> bool:
    return Role.ADVISORS in role_names(user)


def grant_role_permissions(apps: Any, app_label: str, grants: dict[Role, list[str]]) -> None:
    """Give each role the named permissions (codenames) of one app's models; for data migrations.

    Permissions are normally created after all migrations ran; creating them here lets the migration
    that introduces a model also decide who may use it.
    """
    app_config = apps.get_app_config(app_label)
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, codenames in grants.items():
        group, _ = group_model.objects.get_or_create(name=role.value)
        permissions = permission_model.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        missing = set(codenames) - set(permissions.values_list("codename", flat=True))
        if missing:
            raise LookupError(f"Unknown permissions for {app_label}: {sorted(missing)}")
        group.permissions.add(*permissions)


def model_codenames(model_name: str, *actions: str) -> list[str]:
    return [f"{action}_{model_name}" for action in actions]
