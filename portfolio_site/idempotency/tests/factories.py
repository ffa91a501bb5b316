import factory
from factory.django import DjangoModelFactory

from accounts.tests.factories import UserFactory
from portfolio_site.idempotency.models import IdempotencyKey
from portfolio_site.idempotency.services import request_fingerprint


class IdempotencyKeyFactory(DjangoModelFactory):
    """A key whose first answer (a 201) is kept, as a request to the transactions endpoint leaves it."""

    class Meta:
        model = IdempotencyKey

    user = factory.SubFactory(UserFactory)
    key = factory.Faker("uuid4")
    operation = "POST /api/v1/transactions/"
    fingerprint = factory.LazyAttribute(lambda key: request_fingerprint(operation=key.operation, body={}))
    response_status = 201
    response_body = factory.Dict({"id": factory.Sequence(lambda n: n + 1)})
