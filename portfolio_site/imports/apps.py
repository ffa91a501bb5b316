from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class ImportsConfig(AppConfig):
    name = "portfolio_site.imports"
    label = "imports"
    verbose_name = "Imports"

    def ready(self) -> None:
        # Each app declares its CSV row formats in its own importers.py; the engine imports none of them.
        autodiscover_modules("importers")
