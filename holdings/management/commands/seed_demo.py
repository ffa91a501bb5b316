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
from clients.models import Portfolio
from clients.services import client_create
from holdings.models import Allocation, Asset
from holdings.services import allocation_create, asset_create, fx_rate_create, price_create, units_transfer
from ledger.services import cash_transfer, transaction_post

ADMIN_EMAIL = "admin@example.com"

STAFF = [
    ("anna.advisor@example.com", "Anna Lindqvist", Role.ADVISORS),
    ("ben.advisor@example.com", "Ben Okafor", Role.ADVISORS),
    ("olga.ops@example.com", "Olga Petrova", Role.OPERATIONS),
    ("arthur.audit@example.com", "Arthur Dunn", Role.AUDITORS),
]

# Each client's accounts: (name, kind, custodian, account number, base currency, still open). The first holds
# the trades; cash and units then move from it to the second, as a client funding a retirement account does.
CLIENTS = [
    (
        "Hartmann Family Office",
        "office@hartmann.example",
        "EUR",
        0,
        [
            ("Family Taxable", "taxable", "Deutsche Bank", "DB-4410-2231", "EUR", True),
            ("Pension", "retirement", "Allianz", "AZ-PEN-88120", "EUR", True),
            ("Dollar Account", "taxable", "Interactive Brokers", "U7316652", "USD", True),
        ],
    ),
    (
        "Maria Gonzalez",
        "maria.gonzalez@example.net",
        "EUR",
        0,
        [
            ("Brokerage", "taxable", "BBVA", "ES-0182-7745", "EUR", True),
            ("Plan de Pensiones", "retirement", "Santander", "PP-330914", "EUR", True),
            ("Old Savings", "other", "ING", "NL-INGB-55102", "EUR", False),
        ],
    ),
    (
        "Kenji Watanabe",
        "kenji.watanabe@example.org",
        "USD",
        0,
        [
            ("Brokerage", "taxable", "Charles Schwab", "SCH-2291-0471", "USD", True),
            ("Roth IRA", "retirement", "Fidelity", "FID-IRA-661045", "USD", True),
        ],
    ),
    (
        "Northwind Pension Fund",
        "treasury@northwind.example",
        "USD",
        1,
        [
            ("Core Mandate", "trust", "State Street", "SS-NW-000417", "USD", True),
            ("Euro Sleeve", "trust", "BNP Paribas", "BNP-77-31908", "EUR", True),
        ],
    ),
    (
        "Amelia Clarke",
        "amelia.clarke@example.co.uk",
        "GBP",
        1,
        [
            ("General Account", "taxable", "Hargreaves Lansdown", "HL-5520173", "GBP", True),
            ("SIPP", "retirement", "AJ Bell", "AJB-SIPP-40022", "GBP", True),
            ("Joint with Tom", "joint", "Barclays", "BARC-20-44-19", "GBP", True),
        ],
    ),
    (
        "Sven Eriksson Trust",
        "trust@eriksson.example",
        "EUR",
        1,
        [
            ("Trust Account", "trust", "Nordea", "NDA-SE-992214", "EUR", True),
            ("USD Custody", "trust", "Pictet", "PIC-CH-10457", "USD", True),
        ],
    ),
]
# Units of each currency for one euro, on the last day (earlier days drift from it).
FX_RATES = [("USD", Decimal("1.0850")), ("GBP", Decimal("0.8420"))]
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
        "Load a small demo data set once: staff; clients with two or three portfolios each (taxable, retirement, "
        "... at different custodians, in EUR, USD and GBP); assets with 30 days of prices; deposits, trades, and "
        "a cash and a units transfer between two portfolios of each client. "
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
        # ECB-style reference rates (EUR base) on the same days, so that valuations convert out of the box.
        for quote, last in FX_RATES:
            rate = last
            for day in reversed(days):
                fx_rate_create(base="EUR", quote=quote, date=day, rate=rate)
                rate = (rate * Decimal(1 + rng.uniform(-0.004, 0.004))).quantize(Decimal("0.0001"))
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
        opened = days[0] - datetime.timedelta(days=400)
        for name, email, base_currency, advisor_index, accounts in CLIENTS:
            client = client_create(
                actor=admin,
                name=name,
                email=email,
                base_currency=base_currency,
                advisor=advisors[advisor_index],
                portfolios=[
                    {
                        "name": account,
                        "kind": kind,
                        "custodian": custodian,
                        "account_number": number,
                        "base_currency": currency,
                        "opened_on": opened,
                        # A closed account shows what the admin's open/closed filter is for; it never held anything.
                        "closed_on": None if is_open else opened + datetime.timedelta(days=90),
                    }
                    for account, kind, custodian, number, currency, is_open in accounts
                ],
            )
            portfolios = list(client.portfolios.filter(closed_on__isnull=True).order_by("pk"))
            buys = [self._fund_and_trade(admin, rng, portfolio, assets, days[0], trade_day) for portfolio in portfolios]
            first, second = portfolios[0], portfolios[1]
            cash_transfer(
                actor=admin,
                from_portfolio_id=first.pk,
                to_portfolio_id=second.pk,
                amount=Decimal("5000.00"),
                currency=first.base_currency,
                date=days[-3],
                notes=f"Annual contribution to {second.name}",
            )
            moved = buys[0][0]
            units_transfer(
                actor=admin,
                from_portfolio=first,
                to_portfolio=second,
                asset=moved.asset,
                quantity=moved.quantity / 2,
                price=moved.price,  # the cost carried over
                date=days[-2],
            )
            transaction_post(
                actor=admin,
                portfolio_id=first.pk,
                kind="withdrawal",
                amount=Decimal("2500.00"),
                currency=first.base_currency,
                date=days[-1],
                notes="Monthly distribution",
            )

    @staticmethod
    def _fund_and_trade(
        admin: User,
        rng: random.Random,
        portfolio: Portfolio,
        assets: list[tuple[Asset, Decimal]],
        deposit_day: datetime.date,
        trade_day: datetime.date,
    ) -> list[Allocation]:
        """Deposits in the portfolio's currency and in those of the two assets it then buys (enough for both)."""
        chosen = rng.sample(assets, 2)
        for currency in sorted({portfolio.base_currency} | {asset.currency for asset, _ in chosen}):
            transaction_post(
                actor=admin,
                portfolio_id=portfolio.pk,
                kind="deposit",
                amount=Decimal(rng.randrange(120_000, 250_000, 1_000)),
                currency=currency,
                date=deposit_day,
                reference=f"DEMO-DEP-{portfolio.pk}-{currency}",
            )
        buys = []
        for asset, price in chosen:
            quantity = Decimal(rng.randrange(6, 60, 2)) if asset.asset_type != "crypto" else Decimal("0.2500000000")
            buys.append(
                allocation_create(
                    actor=admin,
                    portfolio=portfolio,
                    asset=asset,
                    kind="buy",
                    quantity=quantity,
                    price=price,
                    fees=Decimal("4.95"),
                    date=trade_day,
                )
            )
        return buys
