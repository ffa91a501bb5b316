"""Email one-time login codes, TOTP two-factor authentication and recovery codes."""

urlpatterns: list = []
