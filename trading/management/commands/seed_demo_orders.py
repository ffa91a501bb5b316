"""`manage.py seed_demo_orders`: a few orders and a model portfolio on the demo data, so that the order lists, the
drift report and rebalancing proposals show something at first."""

from collections import Counter
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from clients.models import Portfolio
from holdings.management.commands.seed_demo import ADMIN_EMAIL
from holdings.models import Asset
from holdings.selectors import latest_prices, portfolio_positions
from portfolio_site.errors import ConflictError
from trading import services
from trading.connections import broker_account_save, connection_save
from trading.models import BrokerAccount, BrokerConnection, ModelAssignment, ModelPortfolio, Order
from trading.rebalancing import WeightInput, model_assignment_save, model_portfolio_save


class Command(BaseCommand):
    help = (
        'Place a few orders on the demo data (after seed_demo) through a paper broker connection ("Paper broker", '
        "made if missing, with an account for every open portfolio): in the first two open portfolios, a market "
        "buy that fills, a limit buy below the market left open, a limit sell of part of a position above the "
        'market left open, and a cancelled draft. Then a demo model portfolio, "Balanced (demo)" (the assets the '
        "other open portfolios hold most, in equal weights, 10% cash, a 5-point band), followed by up to three of "
        "those portfolios, so that the drift report and rebalancing proposals show something. Does nothing if any "
        "order exists."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if Order.objects.exists():
            self.stdout.write("Demo orders already placed.")
            return
        admin = User.objects.filter(email=ADMIN_EMAIL).first()
        if admin is None:
            raise CommandError(f"No demo data: run `manage.py seed_demo` first (it creates {ADMIN_EMAIL}).")
        paper = BrokerConnection.objects.filter(name="Paper broker").first() or connection_save(
            connection=BrokerConnection(name="Paper broker", kind=BrokerConnection.Kind.PAPER)
        )
        for portfolio in Portfolio.objects.filter(closed_on__isnull=True).exclude(broker_accounts__connection=paper):
            broker_account_save(
                account=BrokerAccount(connection=paper, portfolio=portfolio, account_id=f"PAPER-{portfolio.pk:06d}")
            )
        placed = 0
        for portfolio in Portfolio.objects.filter(closed_on__isnull=True).order_by("pk")[:2]:
            placed += self._orders(admin, portfolio)
        self.stdout.write(self.style.SUCCESS(f"Placed {placed} demo orders."))
        self._model(admin)

    def _model(self, actor: Any) -> None:
        """A model followed by open portfolios with no order (a portfolio with orders under way gets no proposal)."""
        followers = list(
            Portfolio.objects.filter(closed_on__isnull=True).exclude(orders__isnull=False).order_by("pk")[:3]
        )
        held: Counter[int] = Counter()
        for portfolio in followers:
            held.update(asset_id for asset_id, units in portfolio_positions(portfolio_id=portfolio.pk).items() if units)
        priced = {row["pk"] for row in latest_prices(asset_ids=list(held)) if row["price_close"]}
        assets = [asset_id for asset_id, _ in held.most_common() if asset_id in priced][:4]
        if not followers or not assets:
            return
        share = (Decimal(90) / len(assets)).quantize(Decimal("0.0001"), rounding=ROUND_DOWN)
        weights = [WeightInput(asset, share) for asset in Asset.objects.filter(pk__in=assets).order_by("pk")]
        model = model_portfolio_save(
            model=ModelPortfolio(
                name="Balanced (demo)",
                cash_weight=Decimal(100) - share * len(weights),
                drift_band=Decimal(5),
                minimum_trade=Decimal(100),
            ),
            weights=weights,
        )
        for portfolio in followers:
            model_assignment_save(actor=actor, assignment=ModelAssignment(portfolio=portfolio, model=model))
        self.stdout.write(self.style.SUCCESS(f'Model portfolio "{model}" followed by {len(followers)} portfolio(s).'))

    def _orders(self, actor: Any, portfolio: Portfolio) -> int:
        held = {
            asset_id: units for asset_id, units in portfolio_positions(portfolio_id=portfolio.pk).items() if units > 0
        }
        if not held:
            return 0
        prices = {row["pk"]: row["price_close"] for row in latest_prices(asset_ids=held) if row["price_close"]}
        asset_id = next((pk for pk in held if pk in prices), None)
        if asset_id is None:
            return 0
        asset, price = Asset.objects.get(pk=asset_id), Decimal(prices[asset_id])
        below, above = (
            (price * Decimal("0.9")).quantize(Decimal("0.01")),
            (price * Decimal("1.1")).quantize(Decimal("0.01")),
        )
        some = max(Decimal(1), (held[asset_id] / 4).quantize(Decimal(1), rounding=ROUND_DOWN))
        common = {"actor": actor, "portfolio": portfolio, "asset": asset}
        market = services.order_create(**common, side="buy", quantity=Decimal(1), notes="Demo: filled at the market.")
        self._submit(actor, market)
        limit_buy = services.order_create(
            **common, side="buy", quantity=Decimal(1), order_type="limit", limit_price=below, time_in_force="gtc"
        )
        self._submit(actor, limit_buy)
        limit_sell = services.order_create(
            **common, side="sell", quantity=some, order_type="limit", limit_price=above, time_in_force="gtc"
        )
        self._submit(actor, limit_sell)
        draft = services.order_create(**common, side="buy", quantity=Decimal(2), notes="Demo: changed our mind.")
        services.order_cancel(actor=actor, order=draft)
        return 4

    def _submit(self, actor: Any, order: Order) -> None:
        try:
            services.order_submit(actor=actor, order=order)
        except ConflictError as refusal:  # a portfolio short of cash in the asset's currency: left as a draft
            self.stdout.write(f"Order {order.pk} left as a draft: {refusal.message}")
