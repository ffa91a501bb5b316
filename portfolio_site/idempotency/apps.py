from django.apps import AppConfig


class IdempotencyConfig(AppConfig):
    name = "portfolio_site.idempotency"
    label = "idempotency"
    verbose_name = "Idempotency keys"
