"""The trading app's jobs: thin wrappers around its services (see portfolio_site.jobs for how a job is written)."""

import logging
from typing import Any

from portfolio_site.jobs.base import TRANSIENT_ERRORS, job

from . import services
from .brokers import BrokerUnavailable

logger = logging.getLogger(__name__)

# A broker that does not answer is asked again with backoff (waits of up to 5 s, 10 s, ... 10 min); the periodic
# job below sends whatever is still waiting after that, so an order is never left pending for good.
BROKER_RETRIES: dict[str, Any] = {
    "autoretry_for": (*TRANSIENT_ERRORS, BrokerUnavailable),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "max_retries": 8,
}


@job(name="trading.order_send", **BROKER_RETRIES)
def order_send(*, order_id: int) -> str:
    """Sends a submitted order to its broker; idempotent (the broker knows it by our client order id). The order's
    status after."""
    return services.order_send(order_id=order_id).status


@job(name="trading.order_sync", **BROKER_RETRIES)
def order_sync(*, order_id: int) -> str:
    """Applies what the broker says of an open order: new fills, its end. The order's status after."""
    return services.order_sync(order_id=order_id).status


@job(name="trading.order_withdraw", **BROKER_RETRIES)
def order_withdraw(*, order_id: int) -> None:
    """Cancels at the broker an order that was cancelled here while it was being sent."""
    services.order_withdraw(order_id=order_id)


@job(name="trading.orders_poll", record_runs=False)
def orders_poll() -> dict[str, int]:
    """Every minute (a default schedule): sends the orders still waiting for their broker, polls the open ones, and
    expires the day orders past their day. A broker that does not answer is skipped until the next run; how many of
    each it handled."""
    done = {"sent": 0, "polled": 0, "expired": 0, "unreachable": 0, "failed": 0}
    due = services.orders_due()
    steps = (
        ("sent", due["send"], services.order_send),
        ("polled", due["poll"], services.order_sync),
        ("expired", due["expire"], services.order_expire),
    )
    for counted, order_ids, step in steps:
        for order_id in order_ids:
            try:
                step(order_id=order_id)
            except BrokerUnavailable as error:
                done["unreachable"] += 1
                logger.warning("Order %s: broker unreachable (%s); next run tries again", order_id, error)
            except Exception:
                # One order's trouble (a refused fill, a broker's odd answer) must not stop the others' polls and
                # expiries: it is logged with its trace, counted, and tried again next run.
                done["failed"] += 1
                logger.exception("Order %s: %s failed; next run tries again", order_id, counted)
            else:
                done[counted] += 1
    return done
