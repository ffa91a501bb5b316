"""`Idempotency-Key` on the API's creating requests, with Stripe's semantics (see `api.idempotent`)."""
