import datetime
from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from clients.tests.factories import ClientFactory
from ledger.models import Transaction


class TransactionFactory(DjangoModelFactory):
    """A posted deposit by default. Rows made here bypass the services: use them to set up history."""

    class Meta:
        model = Transaction

    client = factory.SubFactory(ClientFactory)
    kind = Transaction.Kind.DEPOSIT
    amount = Decimal("1000.0000")
    currency = factory.SelfAttribute("client.base_currency")
    date = datetime.date(2026, 1, 15)
