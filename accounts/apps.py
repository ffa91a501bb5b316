from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from accounts import (
            schema,  # noqa: F401  (registers the OpenAPI authentication extension)
            signals,
        )

        signals.connect()
        # A provider without an issuer, or a role map naming a role we do not have, stops the process at start-up
        # (naming the variable) rather than failing on someone's first sign-in.
        from accounts.oidc_config import configuration_check

        configuration_check()


class AdminSiteConfig(admin_apps.AdminConfig):
    """Django's admin with our site, whose login goes through the login service (see accounts.admin_site)."""

    default = False  # named in INSTALLED_APPS; `accounts` itself stays AccountsConfig
    default_site = "accounts.admin_site.AdminSite"
