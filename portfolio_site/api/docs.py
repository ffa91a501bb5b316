"""The Swagger UI page (`/api/docs/`) under the site's own security headers."""

from typing import Any

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.request import Request
from rest_framework.response import Response


class SwaggerView(SpectacularSwaggerView):
    """drf-spectacular answers its Swagger UI with `Cross-Origin-Opener-Policy: unsafe-none`, which Swagger UI's
    OAuth2 sign-in popup needs to reach its opener. The API signs in with JWT bearer tokens pasted into "Authorize",
    never that popup: the page keeps the site's `same-origin` (SECURE_CROSS_ORIGIN_OPENER_POLICY), so no window
    another site opens can script it."""

    @extend_schema(exclude=True)  # as the parent's: the docs page is no API operation
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().get(request, *args, **kwargs)
        del response.headers["Cross-Origin-Opener-Policy"]  # SecurityMiddleware then sets the site's own
        return response
