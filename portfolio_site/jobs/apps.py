from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "portfolio_site.jobs"
    label = "jobs"
    verbose_name = "Jobs"
