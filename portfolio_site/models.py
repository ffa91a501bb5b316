"""Abstract model pieces shared by every app (cross-cutting, like the API plumbing)."""

from typing import Any

from django.core.validators import MaxLengthValidator
from django.db import models

# The longest free text a person may write into a record (notes): a few paragraphs. Enforced by model
# validation, the API and imports alike (the README's API section says so).
NOTES_MAX_LENGTH = 2000


def notes_field(**kwargs: Any) -> models.TextField:
    """Free-text notes. A TextField's max_length only sizes form widgets: the validator enforces it."""
    return models.TextField(
        blank=True, max_length=NOTES_MAX_LENGTH, validators=[MaxLengthValidator(NOTES_MAX_LENGTH)], **kwargs
    )


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
