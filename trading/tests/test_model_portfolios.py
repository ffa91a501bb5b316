"""Model portfolios: the database's rules (each by its name), the weights' sum held by the one service that writes
weights, portfolios following a model, who may do what, and an asset's lot size."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from accounts.roles import Role
from accounts.tests.factories import AdvisorFactory
from clients.tests.factories import ClientFactory, main_portfolio
from holdings.tests.factories import AssetFactory
from portfolio_site.testing import portfolio_client_agreement, refused_by
from trading.models import ModelAssignment, ModelPortfolio, ModelWeight, RebalanceProposal
from trading.rebalancing import WeightInput, model_assignment_save, model_portfolio_save
from trading.tests.factories import (
    ModelAssignmentFactory,
    ModelPortfolioFactory,
    ModelWeightFactory,
    RebalanceProposalFactory,
)

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"name": ""}, "trading_modelportfolio_name_not_blank"),
        ({"cash_weight": D("-1")}, "trading_modelportfolio_cash_weight_percent"),
        ({"cash_weight": D("100.5")}, "trading_modelportfolio_cash_weight_percent"),
        ({"drift_band": D("0")}, "trading_modelportfolio_drift_band_range"),
        ({"drift_band": D("101")}, "trading_modelportfolio_drift_band_range"),
        ({"minimum_trade": D("-0.01")}, "trading_modelportfolio_minimum_trade_not_negative"),
    ],
)
def test_the_database_refuses_a_model_portfolio_outside_its_ranges(fields: dict, constraint: str) -> None:
    with refused_by(constraint):
        ModelPortfolioFactory(**fields)


def test_the_database_refuses_two_model_portfolios_of_one_name() -> None:
    ModelPortfolio.objects.create(name="Balanced", drift_band=D("5"))
    with refused_by("trading_modelportfolio.name"):
        ModelPortfolio.objects.create(name="Balanced", drift_band=D("5"))


@pytest.mark.parametrize("weight", [D("0"), D("-5"), D("100.0001")])
def test_the_database_refuses_a_weight_not_above_zero_or_above_a_hundred(weight: Decimal) -> None:
    with refused_by("trading_modelweight_weight_percent"):
        ModelWeightFactory(weight=weight)


def test_the_database_refuses_two_weights_for_one_asset_in_a_model() -> None:
    first = ModelWeightFactory()
    with refused_by("trading_modelweight_one_per_asset"):
        ModelWeightFactory(model=first.model, asset=first.asset)


def test_the_database_refuses_an_assignment_whose_client_is_not_its_portfolios() -> None:
    portfolio = main_portfolio(ClientFactory())
    stranger = ClientFactory(main_portfolio=None)
    with refused_by(portfolio_client_agreement(ModelAssignment._meta.db_table)):
        ModelAssignment.objects.create(client=stranger, portfolio=portfolio, model=ModelPortfolioFactory())


def test_the_database_refuses_a_proposal_whose_client_is_not_its_portfolios() -> None:
    portfolio = main_portfolio(ClientFactory())
    stranger = ClientFactory(main_portfolio=None)
    with refused_by(portfolio_client_agreement(RebalanceProposal._meta.db_table)):
        RebalanceProposal.objects.create(
            client=stranger, portfolio=portfolio, model=ModelPortfolioFactory(), proposal={}, basis="x"
        )


def test_the_database_refuses_a_second_model_for_one_portfolio() -> None:
    assignment = ModelAssignmentFactory()
    with refused_by("trading_modelassignment.portfolio_id"):
        ModelAssignmentFactory(portfolio=assignment.portfolio)


def test_the_database_refuses_a_proposal_accepted_by_someone_but_never_accepted() -> None:
    with refused_by("trading_rebalanceproposal_accepted_by_when_accepted"):
        RebalanceProposalFactory(accepted_by=AdvisorFactory())


def test_the_database_refuses_an_asset_lot_of_zero() -> None:
    with refused_by("holdings_asset_lot_size_positive"):
        AssetFactory(lot_size=D("0"))


def test_an_asset_trades_in_lots_of_one_unless_told() -> None:
    assert AssetFactory().lot_size == D("1")


def test_a_model_saves_with_weights_summing_to_a_hundred_with_its_cash() -> None:
    a, b = AssetFactory(), AssetFactory()
    model = model_portfolio_save(
        model=ModelPortfolio(name="Balanced", cash_weight=D("10"), drift_band=D("5")),
        weights=[WeightInput(a, D("60")), WeightInput(b, D("30"))],
    )
    assert dict(ModelWeight.objects.filter(model=model).values_list("asset_id", "weight")) == {a.pk: 60, b.pk: 30}


def test_saving_a_models_weights_replaces_the_old_ones() -> None:
    a, b = AssetFactory(), AssetFactory()
    model = model_portfolio_save(
        model=ModelPortfolio(name="Growth", cash_weight=D("0"), drift_band=D("5")), weights=[WeightInput(a, D("100"))]
    )
    model_portfolio_save(model=model, weights=[WeightInput(b, D("100"))])
    assert list(ModelWeight.objects.filter(model=model).values_list("asset_id", flat=True)) == [b.pk]


@pytest.mark.parametrize("second", [D("29.9999"), D("30.0001")])
def test_weights_that_do_not_sum_to_a_hundred_are_refused_on_weights_and_nothing_changes(second: Decimal) -> None:
    a, b = AssetFactory(), AssetFactory()
    model = model_portfolio_save(
        model=ModelPortfolio(name="Income", cash_weight=D("10"), drift_band=D("5")),
        weights=[WeightInput(a, D("60")), WeightInput(b, D("30"))],
    )
    with pytest.raises(ValidationError) as refusal:
        model_portfolio_save(model=model, weights=[WeightInput(a, D("60")), WeightInput(b, second)])
    assert "weights" in refusal.value.message_dict
    assert ModelWeight.objects.filter(model=model).count() == 2


def test_changing_the_cash_weight_alone_is_checked_against_the_weights() -> None:
    model = model_portfolio_save(
        model=ModelPortfolio(name="Cautious", cash_weight=D("50"), drift_band=D("5")),
        weights=[WeightInput(AssetFactory(), D("50"))],
    )
    model.cash_weight = D("40")
    with pytest.raises(ValidationError) as refusal:
        model_portfolio_save(model=model)
    assert "weights" in refusal.value.message_dict


def test_an_asset_given_twice_is_refused() -> None:
    a = AssetFactory()
    with pytest.raises(ValidationError) as refusal:
        model_portfolio_save(
            model=ModelPortfolio(name="Twice", cash_weight=D("0"), drift_band=D("5")),
            weights=[WeightInput(a, D("50")), WeightInput(a, D("50"))],
        )
    assert "weights" in refusal.value.message_dict


def test_an_advisor_assigns_a_model_to_their_clients_portfolio_and_its_client_follows() -> None:
    client = ClientFactory()
    portfolio = main_portfolio(client)
    assignment = model_assignment_save(
        actor=client.advisor, assignment=ModelAssignment(portfolio=portfolio, model=ModelPortfolioFactory())
    )
    assert assignment.client_id == client.pk


def test_an_advisor_cannot_assign_a_model_to_another_advisors_portfolio() -> None:
    portfolio = main_portfolio(ClientFactory())
    with pytest.raises(PermissionDenied):
        model_assignment_save(
            actor=AdvisorFactory(), assignment=ModelAssignment(portfolio=portfolio, model=ModelPortfolioFactory())
        )
    assert not ModelAssignment.objects.exists()


def _codenames(role: Role) -> set[str]:
    return set(
        Group.objects.get(name=role.value)
        .permissions.filter(content_type__app_label="trading")
        .values_list("codename", flat=True)
    )


def test_operations_manage_models_advisors_assign_them_and_propose_auditors_read() -> None:
    operations, advisors, auditors = _codenames(Role.OPERATIONS), _codenames(Role.ADVISORS), _codenames(Role.AUDITORS)
    manage = {f"{action}_modelportfolio" for action in ("view", "add", "change", "delete")}
    assert manage <= operations
    assert {"view_modelassignment", "view_rebalanceproposal"} <= operations
    assert "add_modelassignment" not in operations
    assert "add_rebalanceproposal" not in operations
    assert "view_modelportfolio" in advisors
    assert not (manage - {"view_modelportfolio"}) & advisors
    assert {f"{action}_modelassignment" for action in ("view", "add", "change", "delete")} <= advisors
    assert {"view_rebalanceproposal", "add_rebalanceproposal", "add_order"} <= advisors
    assert {"view_modelportfolio", "view_modelweight", "view_modelassignment", "view_rebalanceproposal"} <= auditors
    assert not {c for c in auditors if not c.startswith("view_")}


def test_the_history_shows_what_a_models_weights_were_before_they_changed() -> None:
    a, b = AssetFactory(), AssetFactory()
    model = model_portfolio_save(
        model=ModelPortfolio(name="Balanced", cash_weight=Decimal("10")),
        weights=[WeightInput(a, Decimal("60")), WeightInput(b, Decimal("30"))],
    )
    first = timezone.now()

    model_portfolio_save(model=model, weights=[WeightInput(a, Decimal("40")), WeightInput(b, Decimal("50"))])

    then = {(w.asset_id, w.weight) for w in ModelWeight.history.as_of(first).filter(model_id=model.pk)}
    now = {(w.asset_id, w.weight) for w in ModelWeight.history.as_of(timezone.now()).filter(model_id=model.pk)}
    assert then == {(a.pk, Decimal("60")), (b.pk, Decimal("30"))}
    assert now == {(a.pk, Decimal("40")), (b.pk, Decimal("50"))}
