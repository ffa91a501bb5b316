import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Length, Upper
from django.db.models.lookups import Exact
from stdnum import isin as stdnum_isin
from stdnum.exceptions import ValidationError as StdnumError

from clients.scope import ClientOwnedQuerySet
from portfolio_site import display
from portfolio_site.historical import TrackedHistory
from portfolio_site.imports.models import import_batch_field
from portfolio_site.models import TimeStampedModel, notes_field
from portfolio_site.money import CurrencyField, amount_field, currency_constraint, quantity_field
from portfolio_site.scoping import ReferenceDataQuerySet


def validate_isin(value: str) -> None:
    try:
        stdnum_isin.validate(value)
    except StdnumError as error:
        raise ValidationError(
            "%(value)s is not a valid ISIN (%(reason)s).",
            code="invalid_isin",
            params={"value": value, "reason": str(error)},
        ) from None


class AssetType(models.TextChoices):
    EQUITY = "equity", "Equity"
    ETF = "etf", "ETF"
    FUND = "fund", "Fund"
    BOND = "bond", "Bond"
    CRYPTO = "crypto", "Crypto"
    COMMODITY = "commodity", "Commodity"
    CASH = "cash", "Cash"
    OTHER = "other", "Other"


# Upper-case only: the ticker is stored upper-case (checked by holdings_asset_ticker_upper).
TICKER_CHARACTERS = "A-Z0-9./-"
_TICKER = re.compile(r"[A-Za-z0-9./-]+", re.ASCII)


def validate_ticker(value: str) -> None:
    # Runs before clean() strips and upper-cases it, so both cases and surrounding blanks pass here. Other
    # scripts' letters look like these and would make a second, lookalike asset.
    if not _TICKER.fullmatch(value.strip()):
        raise ValidationError("A ticker holds only ASCII letters, digits, '.', '-' and '/'.", code="invalid_ticker")


class Asset(TimeStampedModel):
    AssetType = AssetType

    ticker = models.CharField(
        max_length=32,
        validators=[validate_ticker],
        help_text="Stored upper-case; ASCII letters, digits and . - / only.",
    )
    name = models.CharField(max_length=200)
    exchange = models.CharField(max_length=16, blank=True, help_text="Exchange code (e.g. a MIC), upper-case.")
    currency = CurrencyField(help_text="ISO 4217 code of the currency the asset is quoted in.")
    asset_type = models.CharField(max_length=16, choices=AssetType.choices, default=AssetType.EQUITY)
    isin = models.CharField("ISIN", max_length=12, blank=True, validators=[validate_isin])
    lot_size = quantity_field(
        # In the database too: rows written past the ORM (imports' bulk paths, raw SQL) get a lot of one unit.
        default=Decimal("1"),
        db_default=Decimal("1"),
        help_text="The units it trades in: an order's quantity is a whole number of lots (a rebalancing proposal "
        "rounds down to it).",
    )
    description = models.TextField(
        blank=True,
        # In the database too, as lot_size: rows written past the ORM (imports' bulk paths, raw SQL) get none.
        default="",
        db_default="",
        help_text="What the asset is, for staff; written by hand or accepted from a proposal drawn from its images.",
    )

    # Market data belongs to no client: every holder of the view permission sees every asset.
    objects = ReferenceDataQuerySet["Asset"].as_manager()
    import_batch = import_batch_field()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["ticker", "exchange"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticker", "exchange"],
                name="holdings_asset_ticker_exchange_unique",
                violation_error_message="An asset with this ticker already exists on this exchange.",
            ),
            models.UniqueConstraint(
                fields=["isin"],
                condition=~models.Q(isin=""),
                name="holdings_asset_isin_unique",
                violation_error_message="An asset with this ISIN already exists.",
            ),
            models.CheckConstraint(
                condition=models.Q(ticker=Upper("ticker"), exchange=Upper("exchange")) & ~models.Q(ticker=""),
                name="holdings_asset_ticker_upper",
                violation_error_message="Ticker and exchange are stored upper-case, and the ticker is required.",
            ),
            # A character class, not an anchored pattern: `$` means different things to PostgreSQL and to the
            # Python `re` that Django's REGEXP function runs on SQLite; a class is read the same by both.
            models.CheckConstraint(
                condition=~models.Q(ticker__regex=f"[^{TICKER_CHARACTERS}]"),
                name="holdings_asset_ticker_ascii",
                violation_error_message="A ticker holds only ASCII letters, digits, '.', '-' and '/'.",
            ),
            models.CheckConstraint(
                condition=models.Q(asset_type__in=AssetType.values),
                name="holdings_asset_type_valid",
                violation_error_message="Unknown asset type.",
            ),
            currency_constraint("currency", name="holdings_asset_currency_iso"),
            models.CheckConstraint(
                condition=models.Q(lot_size__gt=0),
                name="holdings_asset_lot_size_positive",
                violation_error_message="The lot size must be greater than zero.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticker}.{self.exchange}" if self.exchange else self.ticker

    def clean(self) -> None:
        super().clean()
        self.ticker = (self.ticker or "").strip().upper()
        self.exchange = (self.exchange or "").strip().upper()
        self.isin = (self.isin or "").strip().upper()


class Price(TimeStampedModel):
    """An asset's closing price on a day, in the asset's currency."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="prices")
    date = models.DateField()
    close = quantity_field()

    objects = ReferenceDataQuerySet["Price"].as_manager()
    import_batch = import_batch_field()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["asset", "-date"]
        # The admin lists the latest closes of every asset first (the unique key serves one asset's).
        indexes = [models.Index(fields=["-date"], name="holdings_price_date")]
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "date"],
                name="holdings_price_asset_date_unique",
                violation_error_message="This asset already has a price for this date.",
            ),
            models.CheckConstraint(
                condition=models.Q(close__gte=0),
                name="holdings_price_close_not_negative",
                violation_error_message="A price cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.asset} {self.date}: {display.number(self.close)}"


# A source's name as MARKET_DATA_SOURCES spells it (lower-case letters, digits, "-" and "_").
SOURCE_NAME_CHARACTERS = "a-z0-9_-"


class AssetSymbol(TimeStampedModel):
    """What a market data source calls an asset ("SAP.DE" at one, "sap.de" at another): one symbol per asset and
    source, and a symbol names one asset at its source. `source` is a key of `settings.MARKET_DATA_SOURCES`."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="symbols")
    source = models.CharField(max_length=32, help_text="The source's name in MARKET_DATA_SOURCES (e.g. prices).")
    symbol = models.CharField(max_length=64, help_text="The asset's symbol at that source, exactly as it spells it.")

    objects = ReferenceDataQuerySet["AssetSymbol"].as_manager()

    class Meta:
        ordering = ["source", "symbol"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "symbol"],
                name="holdings_assetsymbol_source_symbol_unique",
                violation_error_message="Another asset already has this symbol at this source.",
            ),
            models.UniqueConstraint(
                fields=["asset", "source"],
                name="holdings_assetsymbol_asset_source_unique",
                violation_error_message="This asset already has a symbol at this source.",
            ),
            models.CheckConstraint(
                condition=~models.Q(symbol="")
                & ~models.Q(source="")
                & ~models.Q(source__regex=f"[^{SOURCE_NAME_CHARACTERS}]"),
                name="holdings_assetsymbol_named",
                violation_error_message="A symbol and its source's name are required; a source's name holds only "
                "lower-case letters, digits, '-' and '_'.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} at {self.source}"

    def clean(self) -> None:
        super().clean()
        # A symbol is sent as written (sources differ on case); only blanks around it are a typing slip.
        self.symbol = (self.symbol or "").strip()
        self.source = (self.source or "").strip().lower()


class FxRate(TimeStampedModel):
    """A published exchange rate: `rate` units of `quote` for one unit of `base`, on a day (central banks publish
    against their own currency: the ECB's reference rates have base EUR). The rate of a day is the latest
    published on or before it; inverses and crosses are derived (see holdings.fx), never stored."""

    base = CurrencyField(help_text="ISO 4217 code of the currency one unit of which the rate prices.")
    quote = CurrencyField(help_text="ISO 4217 code of the currency the rate is expressed in.")
    date = models.DateField()
    rate = quantity_field(help_text="Units of quote for one unit of base; greater than zero.")

    objects = ReferenceDataQuerySet["FxRate"].as_manager()
    import_batch = import_batch_field()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        verbose_name = "FX rate"
        ordering = ["base", "quote", "-date"]
        constraints = [
            models.UniqueConstraint(
                fields=["base", "quote", "date"],
                name="holdings_fxrate_pair_date_unique",
                violation_error_message="This pair already has a rate for this date.",
            ),
            models.CheckConstraint(
                condition=models.Q(rate__gt=0),
                name="holdings_fxrate_rate_positive",
                violation_error_message="A rate must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=~models.Q(base=models.F("quote")),
                name="holdings_fxrate_two_currencies",
                violation_error_message="A rate is between two different currencies.",
            ),
            currency_constraint("base", name="holdings_fxrate_base_iso"),
            currency_constraint("quote", name="holdings_fxrate_quote_iso"),
        ]

    def __str__(self) -> str:
        return f"{self.base}/{self.quote} {self.date}: {display.number(self.rate)}"


class Split(TimeStampedModel):
    """A split or reverse split of an asset: from the start of `date`, every `old_units` units held become
    `new_units` (2 for 1 doubles a position, 1 for 10 divides it by ten). Reference data, like prices: it applies to
    every holder, as an event of the position fold (holdings.valuation.fold), and is never written into the
    allocations' quantities, so no recalculation can apply it twice. Prices stay as recorded (unadjusted).

    Fractions: without a `cash_in_lieu_price` a holder keeps the fractional units the ratio leaves; with one, each
    holder left with a fraction sells it on `date` at that price (per new unit), recorded by
    `holdings.services.split_create` as a sell allocation marked as cash in lieu of this split."""

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="splits")
    date = models.DateField(help_text="Effective at the start of this day: movements on it are in new units.")
    new_units = quantity_field(help_text="Units after the split for every `old_units` before (2 in 2 for 1).")
    old_units = quantity_field(help_text="Units before the split that become `new_units` (1 in 2 for 1).")
    cash_in_lieu_price = quantity_field(
        null=True,
        blank=True,
        help_text="Per new unit, in the asset's currency: fractions left by the split are sold at it. Empty: "
        "fractional units are kept.",
    )
    notes = notes_field()

    objects = ReferenceDataQuerySet["Split"].as_manager()
    import_batch = import_batch_field()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["asset", "-date"]
        constraints = [
            models.UniqueConstraint(
                fields=["asset", "date"],
                name="holdings_split_asset_date_unique",
                violation_error_message="This asset already has a split on this date.",
            ),
            models.CheckConstraint(
                condition=models.Q(new_units__gt=0, old_units__gt=0),
                name="holdings_split_ratio_positive",
                violation_error_message="Both sides of a split's ratio must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=~models.Q(new_units=models.F("old_units")),
                name="holdings_split_ratio_not_one",
                violation_error_message="A split changes the number of units: new and old units cannot be equal.",
            ),
            models.CheckConstraint(
                condition=models.Q(cash_in_lieu_price__isnull=True) | models.Q(cash_in_lieu_price__gt=0),
                name="holdings_split_cash_in_lieu_positive",
                violation_error_message="A cash-in-lieu price must be greater than zero (leave it empty to keep "
                "fractions).",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.asset} {self.date}: {self.new_units.normalize():f} for {self.old_units.normalize():f}"


class AllocationQuerySet(ClientOwnedQuerySet["Allocation"]):
    client_path = "client"


class AllocationKind(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"
    TRANSFER_IN = "transfer_in", "Transfer in"
    TRANSFER_OUT = "transfer_out", "Transfer out"


TRADE_KINDS = (AllocationKind.BUY, AllocationKind.SELL)


class Allocation(TimeStampedModel):
    """One movement of a portfolio's holdings; a position is the signed sum of its allocations. Its client is
    its portfolio's client (kept for simple queries, held to agree by a (portfolio, client) foreign key)."""

    Kind = AllocationKind
    INCREASES = (Kind.BUY, Kind.TRANSFER_IN)
    DECREASES = (Kind.SELL, Kind.TRANSFER_OUT)
    TRADES = TRADE_KINDS

    # No index of their own: (client, asset) and (portfolio, asset) below lead with them, and serve every lookup by
    # either (the (portfolio, client) key's check on delete included); a third index only slowed each write.
    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey(
        "clients.Client", on_delete=models.PROTECT, related_name="allocations", db_index=False, db_constraint=False
    )
    portfolio = models.ForeignKey(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="allocations", db_index=False, db_constraint=False
    )
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="allocations")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    quantity = quantity_field(help_text="Always positive; the kind gives the direction.")
    price = quantity_field(help_text="Per unit, in the asset's currency.")
    fees = amount_field(default=0, help_text="In the asset's currency.")
    taxes = amount_field(
        default=0,
        help_text="Transaction tax or withholding on the trade, in the asset's currency; settled with it, like fees.",
    )
    date = models.DateField(help_text="Trade date.")
    notes = notes_field()
    settlement = models.OneToOneField(
        "ledger.Transaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The cash transaction that settles a buy or sell; empty for transfers.",
    )
    counterpart = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="counterpart_of",
        help_text="For a transfer between two portfolios of the client, on its incoming leg: the outgoing leg.",
    )
    cash_in_lieu_of = models.ForeignKey(
        Split,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        db_index=False,  # indexed where set only: see Meta.indexes
        related_name="cash_in_lieu",
        help_text="On a sell of a fraction a reverse split left: the split it is paid in lieu of (written by the "
        "split's service, changed or deleted only with the split).",
    )
    # NULL unless imported: then a stable hash of the row and its occurrence in the file.
    import_key = models.CharField(  # noqa: DJ001
        max_length=80,
        null=True,
        blank=True,
        editable=False,
        help_text="Set by imports, so that importing a file twice records each row once.",
    )
    # A database default too: the bulk import and the benchmarks' writers insert named columns only.
    owned_by = models.CharField(
        max_length=200,
        blank=True,
        default="",
        db_default="",
        editable=False,
        help_text="Set when another record owns this movement (a broker's fill): it then changes only through that "
        "record, never on its own.",
    )

    objects = AllocationQuerySet.as_manager()

    import_batch = import_batch_field()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["-date", "-id"]
        indexes = [
            # As the ledger's: the default ordering with its tie-breaker, and the kind filter ahead of it.
            models.Index(fields=["-date", "-id"], name="holdings_alloc_date_id"),
            models.Index(fields=["kind", "-date", "-id"], name="holdings_alloc_kind_date_id"),
            models.Index(fields=["client", "asset"], name="holdings_alloc_client_asset"),
            models.Index(fields=["portfolio", "asset"], name="holdings_alloc_portfolio_asset"),
            # Only the few sells paid in lieu of a split's fraction name one; every lookup is by a split (its
            # sells, the key's check when a split is deleted), which this serves without an entry for every
            # other allocation.
            models.Index(
                fields=["cash_in_lieu_of"],
                condition=models.Q(cash_in_lieu_of__isnull=False),
                name="holdings_alloc_cash_in_lieu",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0),
                name="holdings_allocation_quantity_positive",
                violation_error_message="The quantity must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=models.Q(price__gte=0),
                name="holdings_allocation_price_not_negative",
                violation_error_message="The price cannot be negative.",
            ),
            models.CheckConstraint(
                condition=models.Q(fees__gte=0),
                name="holdings_allocation_fees_not_negative",
                violation_error_message="Fees cannot be negative.",
            ),
            models.CheckConstraint(
                condition=models.Q(taxes__gte=0),
                name="holdings_allocation_taxes_not_negative",
                violation_error_message="Taxes cannot be negative.",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=AllocationKind.values),
                name="holdings_allocation_kind_valid",
                violation_error_message="Unknown allocation kind.",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(kind__in=TRADE_KINDS, settlement__isnull=False)
                    | (~models.Q(kind__in=TRADE_KINDS) & models.Q(settlement__isnull=True))
                ),
                name="holdings_allocation_settled_iff_trade",
                violation_error_message="A buy or sell is settled in cash; a transfer is not.",
            ),
            models.UniqueConstraint(
                fields=["portfolio", "import_key"],
                name="holdings_allocation_import_key_unique_per_portfolio",
                violation_error_message="This row was already imported for this portfolio.",
            ),
            models.CheckConstraint(
                condition=models.Q(counterpart__isnull=True) | models.Q(kind=AllocationKind.TRANSFER_IN),
                name="holdings_allocation_counterpart_on_transfer_in",
                violation_error_message="Only a transfer's incoming leg names its outgoing leg.",
            ),
            models.CheckConstraint(
                condition=models.Q(cash_in_lieu_of__isnull=True) | models.Q(kind=AllocationKind.SELL),
                name="holdings_allocation_cash_in_lieu_is_sell",
                violation_error_message="Cash in lieu of a split's fraction is a sale of that fraction.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {display.number(self.quantity)} {self.asset} for {self.client}"

    def clean(self) -> None:
        super().clean()
        if self.portfolio_id is not None and self.client_id is not None and self.portfolio.client_id != self.client_id:
            raise ValidationError({"portfolio": "The portfolio belongs to another client."})


class DividendQuerySet(ClientOwnedQuerySet["Dividend"]):
    client_path = "client"


class Dividend(TimeStampedModel):
    """A cash dividend paid to one portfolio on one asset. The ex-date decides who is entitled (the units held at the
    close before it, recorded in `units`); the pay date is when the cash arrives, and so when the dividend counts in
    value and returns. Recording one posts its net cash (gross less withholding tax) as a `dividend` transaction on
    the pay date, which `cash` points at, as a trade points at its settlement; changing or deleting it reverses that
    cash (and posts it anew). One per portfolio, asset and ex-date: the natural key imports match on."""

    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey(
        "clients.Client", on_delete=models.PROTECT, related_name="dividends", db_constraint=False
    )
    portfolio = models.ForeignKey(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="dividends", db_constraint=False
    )
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="dividends")
    ex_date = models.DateField(help_text="Units held at the close of the day before are entitled.")
    pay_date = models.DateField(help_text="The day the cash arrives: when the dividend counts.")
    currency = CurrencyField(help_text="The currency paid, which may differ from the asset's.")
    units = quantity_field(help_text="Units held at the close before the ex-date.")
    amount_per_unit = quantity_field(
        null=True, blank=True, help_text="Per unit, in the dividend's currency, when the gross was derived from it."
    )
    gross = amount_field(help_text="Before withholding tax, in the dividend's currency.")
    withholding_tax = amount_field(default=0, help_text="Withheld at source, in the dividend's currency.")
    notes = notes_field()
    cash = models.OneToOneField(
        "ledger.Transaction",
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The net cash posted on the pay date.",
    )

    objects = DividendQuerySet.as_manager()

    import_batch = import_batch_field()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["-pay_date", "-id"]
        indexes = [
            models.Index(fields=["client", "pay_date"], name="holdings_dividend_client_paid"),
            # As the allocations': the default ordering with its tie-breaker, and the currency filter ahead of it.
            models.Index(fields=["-pay_date", "-id"], name="holdings_dividend_paid_id"),
            models.Index(fields=["currency", "-pay_date", "-id"], name="holdings_dividend_ccy_paid_id"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["portfolio", "asset", "ex_date"],
                name="holdings_dividend_unique_per_ex_date",
                violation_error_message="This portfolio already has a dividend of this asset with this ex-date.",
            ),
            models.CheckConstraint(
                condition=models.Q(gross__gt=0),
                name="holdings_dividend_gross_positive",
                violation_error_message="The gross amount must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=models.Q(withholding_tax__gte=0, withholding_tax__lt=models.F("gross")),
                name="holdings_dividend_tax_below_gross",
                violation_error_message="The withholding tax must be at least zero and less than the gross amount.",
            ),
            models.CheckConstraint(
                condition=models.Q(units__gt=0),
                name="holdings_dividend_units_positive",
                violation_error_message="Only units held are entitled to a dividend.",
            ),
            models.CheckConstraint(
                condition=models.Q(amount_per_unit__isnull=True) | models.Q(amount_per_unit__gt=0),
                name="holdings_dividend_per_unit_positive",
                violation_error_message="The amount per unit must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=models.Q(pay_date__gte=models.F("ex_date")),
                name="holdings_dividend_paid_on_or_after_ex_date",
                violation_error_message="The pay date cannot be before the ex-date.",
            ),
            currency_constraint("currency", name="holdings_dividend_currency_iso"),
        ]

    def __str__(self) -> str:
        return (
            f"Dividend {display.money(self.gross, self.currency)} on {self.asset} for {self.client} (ex {self.ex_date})"
        )

    @property
    def net(self) -> Decimal:
        return self.gross - self.withholding_tax

    def clean(self) -> None:
        super().clean()
        if self.portfolio_id is not None and self.client_id is not None and self.portfolio.client_id != self.client_id:
            raise ValidationError({"portfolio": "The portfolio belongs to another client."})


def signed_quantity() -> models.Case:
    return models.Case(
        models.When(kind__in=Allocation.INCREASES, then=models.F("quantity")),
        default=-models.F("quantity"),
        output_field=quantity_field(),
    )


class PortfolioDailyValueQuerySet(ClientOwnedQuerySet["PortfolioDailyValue"]):
    client_path = "portfolio__client"


class PortfolioDailyValue(models.Model):
    """A portfolio's value at the end of one day, in its base currency: derived, never entered.

    Kept by `holdings.services.daily_values_refresh` from the portfolio's `history_changed_from` on, and read
    through `holdings.selectors.daily_values`, which refreshes first: no reader sees a stale row. The figures:

    - holdings_value: the units held at the end of the day times the latest close on or before it, converted at
      the day's rate (holdings.fx: direct, inverse or crossed through the pivot, latest on or before the day);
    - cash_value: the cash per currency (ledger balances, reversals netted from their original's day), converted
      the same way; value = holdings_value + cash_value;
    - inflow and outflow: what entered and what left the portfolio from outside that day, each zero or more, in
      base currency: deposits and withdrawals, and transfers of cash or units to or from the client's other
      portfolios (external to *this* portfolio) or, for units, from or to outside, units at their recorded price
      (the day's close when it is 0). Kept apart, never netted: a return counts what came in at the day's start
      and what went out at its end. A reversal nets against what it reverses. Trades and their settlements are
      internal.
    - transfers_in and transfers_out: the part of inflow and outflow that moved between the client's own
      portfolios (every cash transfer, and units transfers with both legs recorded), which is no flow of the
      client's: its performance leaves them out.
    - complete: false when a held asset had no close on or before the day, or a currency no rate to the base;
      `missing` then says which ({"prices": [asset ids], "rates": [currency codes]}); what could be valued is
      summed, what could not is left out, never taken as zero silently.

    Each figure is summed exactly and rounded once, half-even, to the amount's four places.
    """

    portfolio = models.ForeignKey("clients.Portfolio", on_delete=models.CASCADE, related_name="daily_values")
    date = models.DateField()
    holdings_value = amount_field()
    cash_value = amount_field()
    value = amount_field(help_text="holdings_value + cash_value, in the portfolio's base currency.")
    inflow = amount_field(help_text="Money and units in from outside the portfolio that day.")
    outflow = amount_field(help_text="Money and units out of the portfolio that day.")
    transfers_in = amount_field(help_text="Of the inflow: what came from the client's other portfolios.")
    transfers_out = amount_field(help_text="Of the outflow: what went to the client's other portfolios.")
    complete = models.BooleanField(help_text="False when a price or an exchange rate was missing that day.")
    missing = models.JSONField(default=dict, blank=True, help_text='{"prices": [asset ids], "rates": [codes]}')

    objects = PortfolioDailyValueQuerySet.as_manager()

    class Meta:
        ordering = ["portfolio", "date"]
        constraints = [
            models.UniqueConstraint(
                fields=["portfolio", "date"],
                name="holdings_dailyvalue_portfolio_date_unique",
                violation_error_message="This portfolio already has a value for this day.",
            ),
            models.CheckConstraint(
                condition=models.Q(transfers_in__gte=0, transfers_in__lte=models.F("inflow")),
                name="holdings_dailyvalue_inflow_holds_its_transfers",
                violation_error_message="Inflows and their transfers are zero or more, the transfers part of them.",
            ),
            models.CheckConstraint(
                condition=models.Q(transfers_out__gte=0, transfers_out__lte=models.F("outflow")),
                name="holdings_dailyvalue_outflow_holds_its_transfers",
                violation_error_message="Outflows and their transfers are zero or more, the transfers part of them.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.portfolio_id} {self.date}: {self.value}"


class PositionSnapshotQuerySet(ClientOwnedQuerySet["PositionSnapshot"]):
    client_path = "portfolio__client"


class PositionSnapshot(models.Model):
    """A portfolio's positions after all its movements, by one cost method in one valuation currency: the fold's
    state (`holdings.valuation.fold.Holding.state`) per asset, so that a valuation as of a day on or after the
    last movement reads it instead of folding every movement again. Derived, never entered.

    Current while `data_version` equals the portfolio's: every write to its movements, the prices of what it
    holds or the rates (`clients.services.portfolios_history_changed`) bumps the portfolio's, and a reader
    (`holdings.valuation.snapshot`) refolds before it uses a snapshot whose version is behind. No reader sees a
    stale one."""

    portfolio = models.ForeignKey("clients.Portfolio", on_delete=models.CASCADE, related_name="position_snapshots")
    cost_method = models.CharField(max_length=10)
    currency = CurrencyField(help_text="The valuation currency of the cost figures.")
    data_version = models.PositiveBigIntegerField(help_text="The portfolio's data version the fold read.")
    last_movement = models.DateField(null=True, blank=True, help_text="Null when the portfolio has none.")
    # The ledger's balances over all the portfolio's transactions ({currency: amount as a string}), and the latest
    # day any of them counts from (its effective date): a valuation as of that day or later reads them here.
    cash = models.JSONField(default=dict, blank=True)
    cash_through = models.DateField(null=True, blank=True, help_text="Null when the portfolio has no transaction.")

    objects = PositionSnapshotQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["portfolio", "cost_method", "currency"],
                name="holdings_positionsnapshot_unique",
                violation_error_message="This portfolio already has a snapshot for this cost method and currency.",
            ),
            models.CheckConstraint(
                condition=models.Q(cost_method__in=["average", "fifo"]),
                name="holdings_positionsnapshot_cost_method",
                violation_error_message="The cost method is 'average' or 'fifo'.",
            ),
            currency_constraint("currency", name="holdings_positionsnapshot_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"{self.portfolio_id} {self.cost_method} {self.currency} v{self.data_version}"


class PositionStateQuerySet(ClientOwnedQuerySet["PositionState"]):
    client_path = "snapshot__portfolio__client"


class PositionState(models.Model):
    """One asset's holding in a snapshot: the fold's state as JSON (decimals as strings, exact), with its units
    alongside for whoever inspects the table, the figures a valuation reads, and the asset's latest close as of
    the fold."""

    snapshot = models.ForeignKey(PositionSnapshot, on_delete=models.CASCADE, related_name="positions")
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="+")
    quantity = quantity_field()
    state = models.JSONField()
    # What a valuation reads of the holding (`holdings.valuation.snapshot.StoredHolding`), so that it neither decodes
    # the state nor rebuilds a book of lots: exact decimals as text (the fold carries up to 50 digits, more than a
    # numeric column keeps on SQLite), and whether the state lists missing rates or warnings, read only then.
    units = models.TextField(help_text="The units held, exact.")
    cost = models.TextField(help_text="Cost of the units held, in the asset's currency, exact.")
    cost_value = models.TextField(help_text="Cost in the valuation currency at the trades' rates, exact.")
    realized = models.TextField(help_text="Realized gain in the asset's currency, exact.")
    realized_value = models.TextField(help_text="Realized gain in the valuation currency, exact.")
    noted = models.BooleanField(default=False, help_text="The state lists missing rates or warnings.")
    # The asset's latest close when the snapshot was folded (null: none): the latest on or before any day from
    # `close_date` on, since every price write to a held asset makes the snapshot stale.
    close = quantity_field(null=True, blank=True)
    close_date = models.DateField(null=True, blank=True)

    objects = PositionStateQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "asset"],
                name="holdings_positionstate_unique",
                violation_error_message="This snapshot already has this asset.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_id}: {self.asset_id}"


class UnitHoldQuerySet(ClientOwnedQuerySet["UnitHold"]):
    client_path = "client"


class UnitHold(TimeStampedModel):
    """Units of an asset in one portfolio set aside for a purpose holdings does not know (an order, say), named by
    an opaque `reference` its owner chose ("order:42"). `quantity` is in the units of `as_of`: a split after that day
    scales it as it scales the units held (holdings.splits). While the row exists the units are on hold: every check
    that takes units out keeps the portfolio's units of every day from today on at or above its holds (see
    `holdings.selectors.units_shortfalls`). Releasing the hold deletes the row. Its client is its portfolio's client,
    held to agree by a (portfolio, client) foreign key, as an allocation's."""

    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey(
        "clients.Client", on_delete=models.PROTECT, related_name="unit_holds", db_index=False, db_constraint=False
    )
    portfolio = models.ForeignKey(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="unit_holds", db_index=False, db_constraint=False
    )
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="unit_holds")
    quantity = quantity_field(help_text="Units on hold, in the units of `as_of`; always positive.")
    as_of = models.DateField(help_text="The day whose units `quantity` is expressed in: a later split scales it.")
    reference = models.CharField(
        max_length=100, unique=True, help_text="The holder's own name for the hold (e.g. order:42): one hold each."
    )

    objects = UnitHoldQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["client", "asset"], name="holdings_unithold_client_asset"),
            models.Index(fields=["portfolio", "asset"], name="holdings_unithold_pf_asset"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0),
                name="holdings_unithold_quantity_positive",
                violation_error_message="A hold's quantity must be greater than zero.",
            ),
        ]

    def __str__(self) -> str:
        return f"Hold {self.reference}: {display.number(self.quantity)} {self.asset}"

    def clean(self) -> None:
        super().clean()
        if self.portfolio_id is not None and self.client_id is not None and self.portfolio.client_id != self.client_id:
            raise ValidationError({"portfolio": "The portfolio belongs to another client."})


class AssetImageKind(models.TextChoices):
    FACTSHEET = "factsheet", "Factsheet"
    TERM_SHEET = "term_sheet", "Term sheet"
    LOGO = "logo", "Logo"
    OTHER = "other", "Other"


class AssetImageContentType(models.TextChoices):
    """The formats an upload may be, decided from its content (holdings.images.services), never from its name."""

    PNG = "image/png", "PNG"
    JPEG = "image/jpeg", "JPEG"
    WEBP = "image/webp", "WebP"


ASSET_IMAGE_NAME_MAX_LENGTH = 150


class AssetImage(TimeStampedModel):
    """A picture attached to an asset (a factsheet page, a term-sheet scan, a logo), stored through Django's storage
    API after its metadata was stripped. Written only by `holdings.images.services`.

    Reference data like its asset: everyone who may view images sees every asset's. Deleting the asset deletes its
    images (they describe nothing else); the stored files are deleted by the service that deletes the rows."""

    Kind = AssetImageKind
    ContentType = AssetImageContentType

    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="images")
    kind = models.CharField(max_length=16, choices=AssetImageKind.choices, default=AssetImageKind.OTHER)
    # The name in storage is "asset-images/<random uuid>.<ext>", chosen by the service: never the uploader's name,
    # which may be a path ("../../etc/passwd.png") or say more than it should.
    file = models.FileField(max_length=200)
    content_type = models.CharField(max_length=16, choices=AssetImageContentType.choices)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveIntegerField(help_text="Of the stored (re-encoded) file.")
    sha256 = models.CharField(max_length=64, help_text="Of the stored file, hex.")
    original_name = models.CharField(
        max_length=ASSET_IMAGE_NAME_MAX_LENGTH, blank=True, help_text="The uploaded file's name, for display only."
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = ReferenceDataQuerySet["AssetImage"].as_manager()

    class Meta:
        ordering = ["asset", "-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=AssetImageKind.values),
                name="holdings_assetimage_kind_valid",
                violation_error_message="Unknown image kind.",
            ),
            models.CheckConstraint(
                condition=models.Q(content_type__in=AssetImageContentType.values),
                name="holdings_assetimage_content_type_valid",
                violation_error_message="An asset image is a PNG, JPEG or WebP image.",
            ),
            models.CheckConstraint(
                condition=models.Q(width__gt=0, height__gt=0, size_bytes__gt=0),
                name="holdings_assetimage_dimensions_positive",
                violation_error_message="An image's width, height and size are greater than zero.",
            ),
            # A character class rather than an anchored pattern, read alike by PostgreSQL and SQLite's Python `re`.
            models.CheckConstraint(
                condition=models.Q(Exact(Length("sha256"), 64)) & ~models.Q(sha256__regex="[^0-9a-f]"),
                name="holdings_assetimage_sha256_hex",
                violation_error_message="The checksum is 64 lower-case hexadecimal digits.",
            ),
            models.UniqueConstraint(
                fields=["file"],
                name="holdings_assetimage_file_unique",
                violation_error_message="Another image is stored under this name.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.asset_id}: {self.original_name or self.file.name}"


class DescriptionStatus(models.TextChoices):
    PENDING = "pending", "Waiting for the describer"
    RUNNING = "running", "Being described"
    PROPOSED = "proposed", "Proposed"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    # A proposal no one decided on before a newer one of its image was proposed: it can no longer be accepted, so
    # an old draft accepted late cannot overwrite a newer description without anyone noticing.
    SUPERSEDED = "superseded", "Superseded by a newer proposal"
    FAILED = "failed", "Failed"


# A proposal a describer is still working on: at most one per image, so asking again cannot start a second job.
IN_FLIGHT = [DescriptionStatus.PENDING, DescriptionStatus.RUNNING]
# A proposal that holds the describer's whole answer.
DESCRIBED = [
    DescriptionStatus.PROPOSED,
    DescriptionStatus.ACCEPTED,
    DescriptionStatus.REJECTED,
    DescriptionStatus.SUPERSEDED,
]
DECIDED = [DescriptionStatus.ACCEPTED, DescriptionStatus.REJECTED]

DESCRIPTION_ERROR_MAX_LENGTH = 300


class AssetDescriptionProposal(TimeStampedModel):
    """One request to describe an image, and what came of it: a draft description that becomes the asset's only
    when staff accept it. A row of its own rather than fields on the image: an image may be described again (a
    better model, a failed try), and the drafts staff accepted or rejected stay on record."""

    Status = DescriptionStatus

    image = models.ForeignKey(AssetImage, on_delete=models.CASCADE, related_name="proposals")
    status = models.CharField(max_length=16, choices=DescriptionStatus.choices, default=DescriptionStatus.PENDING)
    text = models.TextField(blank=True, help_text="The describer's whole answer; empty until it has answered.")
    provider = models.CharField(max_length=64, blank=True, help_text="The describer (ASSET_DESCRIBER) that wrote it.")
    model = models.CharField(max_length=128, blank=True, help_text="The describer's model that wrote it.")
    described_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(
        max_length=DESCRIPTION_ERROR_MAX_LENGTH, blank=True, help_text="Why the last try failed (secrets masked)."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = ReferenceDataQuerySet["AssetDescriptionProposal"].as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=DescriptionStatus.values),
                name="holdings_descproposal_status_valid",
                violation_error_message="Unknown proposal status.",
            ),
            # Only a whole answer is ever stored: text exactly when the describer answered in full.
            models.CheckConstraint(
                condition=(models.Q(status__in=DESCRIBED) & ~models.Q(text="") & models.Q(described_at__isnull=False))
                | (~models.Q(status__in=DESCRIBED) & models.Q(text="")),
                name="holdings_descproposal_text_when_described",
                violation_error_message="A proposed, accepted, rejected or superseded description has its text and "
                "its time; any other has no text.",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=DECIDED, decided_at__isnull=False)
                | (~models.Q(status__in=DECIDED) & models.Q(decided_at__isnull=True)),
                name="holdings_descproposal_decided_when_accepted_or_rejected",
                violation_error_message="An accepted or rejected proposal says when; no other does.",
            ),
            models.UniqueConstraint(
                fields=["image"],
                condition=models.Q(status__in=IN_FLIGHT),
                name="holdings_descproposal_one_in_flight_per_image",
                violation_error_message="This image is being described already.",
            ),
        ]

    def __str__(self) -> str:
        return f"Description of image {self.image_id} ({self.get_status_display()})"
