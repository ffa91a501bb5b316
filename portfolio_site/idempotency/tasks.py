"""The idempotency keys' job."""

import logging

from portfolio_site.jobs.base import job

from .services import expired_keys_purge

logger = logging.getLogger(__name__)


@job(name="idempotency.purge_expired_keys")
def purge_expired_keys() -> int:
    """Nightly (a default schedule): deletes the idempotency keys older than IDEMPOTENCY_KEY_TTL. How many; a second
    run deletes nothing."""
    deleted = expired_keys_purge()
    logger.info("Expired idempotency keys deleted: %s", deleted)
    return deleted
