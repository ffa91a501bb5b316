"""How drf-spectacular describes our authentication (loaded by AccountsConfig.ready)."""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class SessionJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.SessionJWTAuthentication"
    name = "jwtAuth"


class LoginSessionScheme(SessionScheme):
    """The admin site's session cookie, as DRF's session authentication is described."""

    target_class = "accounts.authentication.LoginSessionAuthentication"
    priority = 0
