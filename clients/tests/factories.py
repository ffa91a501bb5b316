import datetime

import factory
from factory.django import DjangoModelFactory

from accounts.tests.factories import AdvisorFactory
from clients.models import Client, Portfolio


class PortfolioFactory(DjangoModelFactory):
    class Meta:
        model = Portfolio

    client = factory.SubFactory("clients.tests.factories.ClientFactory", main_portfolio=None)
    name = factory.Sequence(lambda n: f"Account {n}")
    kind = Portfolio.Kind.TAXABLE
    base_currency = factory.SelfAttribute("client.base_currency")
    opened_on = datetime.date(2025, 1, 1)


class ClientFactory(DjangoModelFactory):
    """A client with its "Main" portfolio, as `client_create` makes it (`main_portfolio=None` for none)."""

    class Meta:
        model = Client
        skip_postgeneration_save = True

    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"client{n}@example.net")
    phone = "+44 20 7946 0000"
    advisor = factory.SubFactory(AdvisorFactory)
    base_currency = "EUR"
    main_portfolio = factory.RelatedFactory(
        PortfolioFactory, factory_related_name="client", name=Portfolio.DEFAULT_NAME
    )


def main_portfolio(client: Client) -> Portfolio:
    """The client's first portfolio (its "Main" one), opened if it has none."""
    first = client.portfolios.order_by("pk").first()
    return first if first is not None else PortfolioFactory.create(client=client, name=Portfolio.DEFAULT_NAME)
