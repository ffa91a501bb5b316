"""Loads a small, realistic demo data set once, through the same services the API uses."""

import datetime
import random
import secrets
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role
from accounts.services import user_create
from clients.services import client_create
from holdings.models import Asset
from holdings.services import allocation_create, asset_create, price_create
from ledger.services import transaction_post

ADMIN_EMAIL = "admin@example.com"

STAFF = [
    ("anna.advisor@example.com", "Anna Lindqvist", Role.ADVISORS),
    ("ben.advisor@example.com", "Ben Okafor", Role.ADVISORS),
    ("olga.ops@example.com", "Olga Petrova", Role.OPERATIONS),
    ("arthur.audit@example.com", "Arthur Dunn", Role.AUDITORS),
]
CLIENTS = [
    ("Hartmann Family Office", "office@hartmann.example", "EUR", 0),
    ("Maria Gonzalez", "maria.gonzalez@example.net", "EUR", 0),
    ("Kenji Watanabe", "kenji.watanabe@example.org", "USD", 0),
    ("Northwind Pension Fund", "treasury@northwind.example", "USD", 1),
    ("Amelia Clarke", "amelia.clarke@example.co.uk", "GBP", 1),
    ("Sven Eriksson Trust", "trust@eriksson.example", "EUR", 1),
]
ASSETS = [
    ("AAPL", "Apple Inc.", "XNAS", "USD", "equity", "US0378331005", Decimal("189.50")),
    ("MSFT", "Microsoft Corp.", "XNAS", "USD", "equity", "US5949181045", Decimal("415.20")),
    ("ASML", "ASML Holding N.V.", "XAMS", "EUR", "equity", "NL0010273215", Decimal("870.40")),
    ("VWRL", "Vanguard FTSE All-World UCITS ETF", "XAMS", "EUR", "etf", "IE00B3RBWM25", Decimal("112.35")),
    ("IGLT", "iShares Core UK Gilts UCITS ETF", "XLON", "GBP", "bond", "IE0005042456", Decimal("10.42")),
    ("BTC", "Bitcoin", "", "USD", "crypto", "", Decimal("64250.00")),
]
PRICE_DAYS = 30


class Command(BaseCommand):
    help = (
        "Load a small demo data set (staff, clients, assets with 30 days of prices, trades and cash) once. "
        f"Creates the superuser {ADMIN_EMAIL} and prints its generated password; does nothing if it exists."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if User.objects.filter(email=ADMIN_EMAIL).exists():
            self.stdout.write(f"Demo data already loaded (log in as {ADMIN_EMAIL}).")
            return
        password = secrets.token_urlsafe(12)
        self._load(password)
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        self.stdout.write(f"Admin login: {ADMIN_EMAIL}  password: {password}  (shown once; change it)")

    @transaction.atomic
    def _load(self, password: str) -> None:
        rng = random.Random(20261123)  # the same demo every time
        admin = user_create(
            email=ADMIN_EMAIL, password=password, full_name="Demo Administrator", is_superuser=True, is_verified=True
        )
        staff = [
            user_create(
                email=email,
                password=None,
                full_name=name,
                is_staff=True,
                is_verified=True,
                groups=[Group.objects.get(name=role.value)],
            )
            for email, name, role in STAFF
        ]
        advisors = [user for user in staff if user.email.endswith("advisor@example.com")]

        today = timezone.localdate()
        days = [
            today - datetime.timedelta(days=n)
            for n in range(PRICE_DAYS * 7 // 5 + 7)
            if (today - datetime.timedelta(days=n)).weekday() < 5
        ]
        days = sorted(days[:PRICE_DAYS])
        assets: list[tuple[Asset, Decimal]] = []
        for ticker, name, exchange, currency, kind, isin, last in ASSETS:
            asset = asset_create(
                ticker=ticker, name=name, exchange=exchange, currency=currency, asset_type=kind, isin=isin
            )
            close = last
            for day in reversed(days):
                price_create(asset=asset, date=day, close=close)
                close = (close * Decimal(1 + rng.uniform(-0.02, 0.02))).quantize(Decimal("0.01"))
            assets.append((asset, last))

        trade_day = days[len(days) // 2]
        for name, email, base_currency, advisor_index in CLIENTS:
            client = client_create(
                actor=admin, name=name, email=email, base_currency=base_currency, advisor=advisors[advisor_index]
            )
            for currency in ("EUR", "USD", "GBP"):
                transaction_post(
                    actor=admin,
                    client_id=client.pk,
                    kind="deposit",
                    amount=Decimal(rng.randrange(50_000, 250_000, 1_000)),
                    currency=currency,
                    date=days[0],
                    reference=f"DEMO-DEP-{client.pk}-{currency}",
                )
            for asset, price in rng.sample(assets, 3):
                quantity = Decimal(rng.randrange(5, 60)) if asset.asset_type != "crypto" else Decimal("0.2500000000")
                allocation_create(
                    actor=admin,
                    client=client,
                    asset=asset,
                    kind="buy",
                    quantity=quantity,
                    price=price,
                    fees=Decimal("4.95"),
                    date=trade_day,
                )
            transaction_post(
                actor=admin,
                client_id=client.pk,
                kind="withdrawal",
                amount=Decimal("2500.00"),
                currency=base_currency,
                date=days[-1],
                notes="Monthly distribution",
            )
