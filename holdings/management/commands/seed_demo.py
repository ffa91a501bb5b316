"""Loads a demo data set worth looking at once, through the same services the API uses: three years of daily
market data and of deposits, withdrawals and trades, with half-yearly dividends, interest and custody fees, so that
valuations, returns, income and charts show something."""

import datetime
import math
import random
import secrets
from decimal import ROUND_FLOOR, Decimal
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
from holdings.dividends import dividend_create
from holdings.models import Asset, FxRate, Price
from holdings.services import (
    allocation_create,
    asset_create,
    daily_values_refresh,
    fx_rates_bulk_create,
    prices_bulk_create,
    units_transfer,
)
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
# Units of each currency for one euro on the last day, and the daily volatility of their walk back from it.
FX_RATES = [("USD", Decimal("1.0850"), 0.004), ("GBP", Decimal("0.8420"), 0.003)]
# (ticker, name, exchange, currency, type, ISIN, last close); earlier closes walk back from the last one.
ASSETS = [
    ("AAPL", "Apple Inc.", "XNAS", "USD", "equity", "US0378331005", Decimal("189.50")),
    ("MSFT", "Microsoft Corp.", "XNAS", "USD", "equity", "US5949181045", Decimal("415.20")),
    ("ASML", "ASML Holding N.V.", "XAMS", "EUR", "equity", "NL0010273215", Decimal("870.40")),
    ("VWRL", "Vanguard FTSE All-World UCITS ETF", "XAMS", "EUR", "etf", "IE00B3RBWM25", Decimal("112.35")),
    ("IGLT", "iShares Core UK Gilts UCITS ETF", "XLON", "GBP", "bond", "IE0005042456", Decimal("10.42")),
    ("BTC", "Bitcoin", "", "USD", "crypto", "", Decimal("64250.00")),
]
# Daily drift and volatility of each type's walk: roughly 8 % a year for shares, more swing for crypto.
WALKS = {"equity": (0.0003, 0.016), "etf": (0.00025, 0.009), "bond": (0.00005, 0.004), "crypto": (0.0008, 0.035)}
HISTORY_YEARS = 3
TRADE_EVERY = 15  # business days between a portfolio's trades, about
FLOW_EVERY = 63  # a deposit or withdrawal about once a quarter
FEES = Decimal("4.95")
CENT = Decimal("0.01")
# Each half-year's end: a dividend of every share, fund and bond held (half of a 2 % yield, 15 % withheld, paid ten
# days later), interest on the base currency's cash (0.5 % a year) and a custody fee. Twice a year, not quarterly:
# each is a write through the services, and the demo should stay quick to load.
HALF_YEARLY_YIELD = Decimal("0.01")
WITHHOLDING = Decimal("0.15")
INTEREST_RATE = Decimal("0.0025")
CUSTODY_FEE = Decimal("25.00")
PAID_AFTER = datetime.timedelta(days=10)


class Command(BaseCommand):
    help = (
        "Load a demo data set once: staff; clients with two or three portfolios each (taxable, retirement, ... at "
        "different custodians, in EUR, USD and GBP, one closed); assets with three years of business-day closes "
        "and EUR reference rates (a seeded random walk); deposits, withdrawals and trades in several currencies "
        "over those years, with half-yearly dividends, interest and custody fees; a cash and a units transfer between "
        "two portfolios of each client. "
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
        first_day = today - datetime.timedelta(days=365 * HISTORY_YEARS)
        days = [
            first_day + datetime.timedelta(days=n)
            for n in range((today - first_day).days + 1)
            if (first_day + datetime.timedelta(days=n)).weekday() < 5
        ]
        market = self._market(rng, days)

        opened = days[0] - datetime.timedelta(days=30)
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
            books = [_Book(admin, rng, portfolio, market, days) for portfolio in portfolios]
            for book in books:
                book.run_history()
            books[0].hand_over(books[1])
        # Computed now rather than on the first page view, so that the first look at a client is quick.
        daily_values_refresh(until=today)

    @staticmethod
    def _market(rng: random.Random, days: list[datetime.date]) -> dict[Asset, dict[datetime.date, Decimal]]:
        """Assets with a close on every business day and EUR reference rates on the same days: seeded random walks
        back from today's figures. Written set-based (a few INSERTs, not thousands of saves) through the services'
        bulk loads, which mark the holders' history changed and invalidate the caches as the per-row ones do."""
        rates = []
        for quote, last, volatility in FX_RATES:
            rate = last
            for day in reversed(days):
                rates.append(FxRate(base="EUR", quote=quote, date=day, rate=rate))
                rate = (rate / Decimal(1 + rng.gauss(0, volatility))).quantize(Decimal("0.0001"))
        fx_rates_bulk_create(rates=rates)
        market: dict[Asset, dict[datetime.date, Decimal]] = {}
        prices = []
        for ticker, name, exchange, currency, kind, isin, last in ASSETS:
            asset = asset_create(
                ticker=ticker, name=name, exchange=exchange, currency=currency, asset_type=kind, isin=isin
            )
            drift, volatility = WALKS[kind]
            closes = market[asset] = {}
            close = last
            for day in reversed(days):
                closes[day] = close
                prices.append(Price(asset=asset, date=day, close=close))
                close = (close / Decimal(1 + rng.gauss(drift, volatility))).quantize(CENT)
        prices_bulk_create(prices=prices)
        return market


class _Book:
    """One portfolio's demo history, written through the services in date order. It keeps its own tally of cash
    per currency and units per asset, so that it only ever asks for what the money rules allow (no withdrawal or
    buy beyond the cash held that day, no sale beyond the units)."""

    def __init__(
        self,
        admin: User,
        rng: random.Random,
        portfolio: Portfolio,
        market: dict[Asset, dict[datetime.date, Decimal]],
        days: list[datetime.date],
    ) -> None:
        self.admin, self.rng, self.portfolio, self.days = admin, rng, portfolio, days
        self.assets = rng.sample(sorted(market, key=lambda asset: asset.ticker), 3)
        self.closes = market
        self.cash: dict[str, Decimal] = {}
        self.units: dict[Asset, Decimal] = {}

    @property
    def base(self) -> str:
        return self.portfolio.base_currency

    def run_history(self) -> None:
        """Funds the account in its currency and its assets' in the first weeks, then trades about every three
        weeks and adds or takes money about once a quarter, until a week before today."""
        start = self.rng.randrange(0, 20)
        for currency in sorted({self.base} | {asset.currency for asset in self.assets}):
            self._post("deposit", Decimal(self.rng.randrange(150_000, 300_000, 1_000)), currency, self.days[start])
        index = start + self.rng.randrange(1, 5)
        next_flow = start + FLOW_EVERY
        done = index
        while index < len(self.days) - 6:
            day = self.days[index]
            # The half-years that ended since the last movement, before this one's trade (on an ex-date it is not
            # entitled: the units held at the close before count).
            for half_year_end in self.days[done + 1 : index + 1]:
                if _is_half_year_end(half_year_end):
                    self._half_year_end(half_year_end)
            done = index
            if index >= next_flow:
                self._flow(day)
                next_flow += FLOW_EVERY + self.rng.randrange(-10, 10)
            else:
                self._trade(day)
            index += max(1, TRADE_EVERY + self.rng.randrange(-7, 8))

    def hand_over(self, other: "_Book") -> None:
        """In the last days: cash and then half of a holding move to the client's other portfolio (as funding a
        retirement account does), and a distribution leaves."""
        transfer = min(Decimal("5000.00"), self.cash.get(self.base, Decimal(0)))
        cash_transfer(
            actor=self.admin,
            from_portfolio_id=self.portfolio.pk,
            to_portfolio_id=other.portfolio.pk,
            amount=transfer,
            currency=self.base,
            date=self.days[-3],
            notes=f"Annual contribution to {other.portfolio.name}",
        )
        self.cash[self.base] -= transfer
        # The largest holding by value (there is always one: the history buys every few weeks for three years).
        asset = max(self.units, key=lambda held: (self.units[held] * self.closes[held][self.days[-2]], held.ticker))
        units_transfer(
            actor=self.admin,
            from_portfolio=self.portfolio,
            to_portfolio=other.portfolio,
            asset=asset,
            quantity=self._rounded(asset, self.units[asset] / 2),
            price=self.closes[asset][self.days[-2]],  # the cost carried over, at the day's close
            date=self.days[-2],
        )
        distribution = min(Decimal("2500.00"), self.cash[self.base])
        self._post("withdrawal", distribution, self.base, self.days[-1], "Monthly distribution")

    def _half_year_end(self, day: datetime.date) -> None:
        """Dividends on what was held at the close before, then interest on the cash and the custody fee."""
        for asset, units in sorted(self.units.items(), key=lambda item: item[0].ticker):
            if units <= 0 or asset.asset_type == "crypto":
                continue
            per_unit = (self.closes[asset][day] * HALF_YEARLY_YIELD).quantize(Decimal("0.0001"))
            gross = (units * per_unit).quantize(Decimal("0.0001"))
            if gross <= 0:
                continue
            # The cash arrives on the pay date: it is not counted here, so that nothing is spent before it comes.
            dividend_create(
                actor=self.admin,
                portfolio=self.portfolio,
                asset=asset,
                ex_date=day,
                pay_date=min(day + PAID_AFTER, self.days[-1]),
                amount_per_unit=per_unit,
                withholding_tax=(gross * WITHHOLDING).quantize(CENT),
                notes="Half-yearly dividend",
            )
        cash = self.cash.get(self.base, Decimal(0))
        interest = (cash * INTEREST_RATE).quantize(CENT)
        if interest > 0:
            self._post("interest", interest, self.base, day, "Interest on cash")
        if self.cash.get(self.base, Decimal(0)) >= CUSTODY_FEE:
            self._post("fee", CUSTODY_FEE, self.base, day, "Custody fee")

    def _flow(self, day: datetime.date) -> None:
        held = self.cash.get(self.base, Decimal(0))
        if self.rng.random() < 0.6 or held < 10_000:
            self._post("deposit", Decimal(self.rng.randrange(5_000, 40_000, 500)), self.base, day, "Top-up")
        else:
            self._post("withdrawal", (held * Decimal(self.rng.uniform(0.05, 0.2))).quantize(CENT), self.base, day)

    def _trade(self, day: datetime.date) -> None:
        asset = self.rng.choice(self.assets)
        price = self.closes[asset][day]
        held = self.units.get(asset, Decimal(0))
        if held > 0 and self.rng.random() < 0.25:
            quantity = self._rounded(asset, held * Decimal(self.rng.uniform(0.15, 0.5)))
            if quantity > 0 and quantity * price > FEES:
                self._allocate("sell", asset, quantity, price, day)
            return
        budget = self.cash.get(asset.currency, Decimal(0)) * Decimal(self.rng.uniform(0.1, 0.35))
        quantity = self._rounded(asset, (budget - FEES) / price)
        if quantity > 0:
            self._allocate("buy", asset, quantity, price, day)

    @staticmethod
    def _rounded(asset: Asset, quantity: Decimal) -> Decimal:
        """Whole units of a security, ten-thousandths of a coin, always rounded down (never more than there is)."""
        if asset.asset_type == "crypto":
            return (quantity * 10_000).to_integral_value(rounding=ROUND_FLOOR) / 10_000
        return Decimal(math.floor(quantity))

    def _allocate(self, kind: str, asset: Asset, quantity: Decimal, price: Decimal, day: datetime.date) -> None:
        allocation_create(
            actor=self.admin,
            portfolio=self.portfolio,
            asset=asset,
            kind=kind,
            quantity=quantity,
            price=price,
            fees=FEES,
            date=day,
        )
        sign = 1 if kind == "buy" else -1
        self.units[asset] = self.units.get(asset, Decimal(0)) + sign * quantity
        self.cash[asset.currency] -= sign * quantity * price + FEES

    def _post(self, kind: str, amount: Decimal, currency: str, day: datetime.date, notes: str = "") -> None:
        transaction_post(
            actor=self.admin,
            portfolio_id=self.portfolio.pk,
            kind=kind,
            amount=amount,
            currency=currency,
            date=day,
            notes=notes,
            reference=f"DEMO-{self.portfolio.pk}-{kind[:3].upper()}-{currency}-{day:%Y%m%d}",
        )
        inflow = kind in ("deposit", "interest", "tax_refund")
        self.cash[currency] = self.cash.get(currency, Decimal(0)) + (amount if inflow else -amount)


def _is_half_year_end(day: datetime.date) -> bool:
    """The last business day of June or December."""
    if day.month % 6:
        return False
    following = day + datetime.timedelta(days=1)
    while following.weekday() >= 5:
        following += datetime.timedelta(days=1)
    return following.month != day.month
