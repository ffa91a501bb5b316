from rest_framework import permissions


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django model permissions, with `view_<model>` required to read (DRF only checks writes)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if request.user and request.user.is_authenticated and not hasattr(view, request.method.lower()):
            # The route has no such method for anyone: let dispatch answer 405 rather than a misleading 403.
            return True
        return super().has_permission(request, view)


class IsSuperuser(permissions.BasePermission):
    message = "Only an administrator may do this."

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        return bool(request.user and request.user.is_authenticated and request.user.is_superuser)
