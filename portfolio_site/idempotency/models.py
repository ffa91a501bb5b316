from django.conf import settings
from django.db import models
from django.utils import timezone

KEY_MAX_LENGTH = 255


class IdempotencyKey(models.Model):
    """The first answer to a request sent with an `Idempotency-Key`, replayed to the same caller for the same key.

    A row exists only once a request with its key began executing and ended in an answer worth replaying (a 2xx
    or a 409); its `response_status` is empty only inside the transaction that claims the key."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=KEY_MAX_LENGTH, help_text="The caller's `Idempotency-Key` header.")
    operation = models.TextField(help_text="The method and path it was first sent to, e.g. `POST /api/v1/...`.")
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the operation and the canonical JSON body.")
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "key"],
                name="idempotency_key_unique_per_user",
                violation_error_message="This user already used this idempotency key.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.operation}, {self.response_status})"
