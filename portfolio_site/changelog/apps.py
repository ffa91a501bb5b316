from django.apps import AppConfig


class ChangelogConfig(AppConfig):
    name = "portfolio_site.changelog"
    label = "changelog"
    verbose_name = "Change history"
