"""Account flows by email: verification, password reset, and password change."""

urlpatterns: list = []
