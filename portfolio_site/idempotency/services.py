"""Claiming, answering and purging idempotency keys. The door that uses them is `api.idempotent`."""

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import IdempotencyKey


def is_replayable(status_code: int) -> bool:
    """Whether an answer is kept for the key, as Stripe keeps it: a request that executed (2xx) or that the current
    state refused (409). Invalid input (400), refused credentials or permissions (401, 403), a missing object (404),
    a throttle (429) and server errors (5xx) are not kept: the caller may fix the request and retry with the key."""
    return 200 <= status_code < 300 or status_code == 409


def request_fingerprint(*, operation: str, body: Any) -> str:
    """SHA-256 of the operation and the body as canonical JSON (keys sorted, no spacing): the same request gives the
    same fingerprint whatever the order of its keys."""
    canonical = json.dumps(
        {"operation": operation, "body": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _is_live(record: IdempotencyKey) -> bool:
    return record.response_status is not None and record.created_at > timezone.now() - settings.IDEMPOTENCY_KEY_TTL


def idempotency_key_claim(*, user: Any, key: str, operation: str, fingerprint: str) -> tuple[IdempotencyKey, bool]:
    """The caller's row for `key`, locked until the surrounding transaction ends, and whether it holds an answer to
    replay (True) or was claimed for this request (False: new, or replacing an expired one).

    Must run inside `transaction.atomic()`. A concurrent request with the same key waits here (on the row lock, or on
    the unique index for a row not yet committed) until the first one's transaction ends; it then finds the first
    answer, or, if the first left no row (an answer not kept), claims the key itself."""
    locked = IdempotencyKey.objects.select_for_update()
    record = locked.filter(user=user, key=key).first()
    if record is None:
        record = IdempotencyKey(user=user, key=key, operation=operation, fingerprint=fingerprint)
        # The rule that one caller's key is one row is the database's (the unique constraint), under any race.
        record.full_clean(exclude=["user"], validate_constraints=False)
        try:
            with transaction.atomic():
                record.save(force_insert=True)
            return record, False
        except IntegrityError:
            # Another request inserted the key and committed while this one waited on the index: read its row.
            record = locked.get(user=user, key=key)
    if _is_live(record):
        return record, True
    # Expired: as if absent. Replaced in place (under the lock); if this request's answer is not kept either, the
    # rollback brings the expired row back, and the nightly purge deletes it.
    record.operation, record.fingerprint, record.created_at = operation, fingerprint, timezone.now()
    record.response_status, record.response_body = None, None
    record.full_clean(exclude=["user"], validate_constraints=False)
    record.save()
    return record, False


def idempotency_key_answer(*, record: IdempotencyKey, status_code: int, body: Any) -> None:
    """Keeps the answer of the request that claimed `record`, in that request's transaction."""
    record.response_status, record.response_body = status_code, body
    record.save(update_fields=["response_status", "response_body"])


def expired_keys_purge() -> int:
    """Deletes the keys older than IDEMPOTENCY_KEY_TTL (they already act as absent); how many."""
    cutoff = timezone.now() - settings.IDEMPOTENCY_KEY_TTL
    deleted, _ = IdempotencyKey.objects.filter(created_at__lte=cutoff).delete()
    return deleted
