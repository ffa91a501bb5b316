import factory
from factory.django import DjangoModelFactory

from accounts.tests.factories import AdvisorFactory
from clients.models import Client


class ClientFactory(DjangoModelFactory):
    class Meta:
        model = Client

    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"client{n}@example.net")
    phone = "+44 20 7946 0000"
    advisor = factory.SubFactory(AdvisorFactory)
    base_currency = "EUR"
