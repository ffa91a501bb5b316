"""The scoped doors refuse a model they could not scope, when the viewset is defined or the admin registered."""

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.test.utils import isolate_apps
from rest_framework import serializers

from accounts.models import User
from clients.models import Client, Portfolio
from clients.scope import ClientOwnedQuerySet
from holdings.models import Allocation, Asset, AssetDescriptionProposal, AssetImage, Price
from ledger.models import Transaction
from portfolio_site.admin_utils import ScopedAdminMixin
from portfolio_site.api.viewsets import ScopedModelViewSet
from portfolio_site.scoping import ReferenceDataQuerySet, owner_path, scoped


def _viewset_for(model: type[models.Model]) -> type[Any]:
    serializer = type("ToySerializer", (serializers.ModelSerializer,), {"Meta": type("Meta", (), {"model": model})})
    return type("ToyViewSet", (ScopedModelViewSet,), {"queryset": model.objects.all(), "serializer_class": serializer})  # type: ignore[attr-defined]


def _admin_for(model: type[models.Model]) -> Any:
    return type("ToyAdmin", (ScopedAdminMixin, admin.ModelAdmin), {})(model, admin.AdminSite(name="toy"))


class _PortfolioNotes(ReferenceDataQuerySet[Any]):
    pass


@pytest.fixture
def isolated() -> Any:
    with isolate_apps("clients"):
        yield


def _toy(name: str, **fields: Any) -> type[models.Model]:
    return type(
        name, (models.Model,), {"__module__": __name__, "Meta": type("Meta", (), {"app_label": "clients"}), **fields}
    )


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("door", [_viewset_for, _admin_for], ids=["viewset", "admin"])
def test_a_door_refuses_a_client_owned_model_whose_queryset_has_no_visible_to(door: Any) -> None:
    note = _toy("ClientNote", client=models.ForeignKey(Client, on_delete=models.CASCADE))
    with pytest.raises(ImproperlyConfigured, match=r"ClientNote .* no visible_to .*through client"):
        door(note)


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("door", [_viewset_for, _admin_for], ids=["viewset", "admin"])
def test_a_door_refuses_a_model_that_reaches_the_client_only_through_another_model(door: Any) -> None:
    note = _toy("PortfolioNote", portfolio=models.ForeignKey(Portfolio, on_delete=models.CASCADE))
    with pytest.raises(ImproperlyConfigured, match="through portfolio__client"):
        door(note)


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("door", [_viewset_for, _admin_for], ids=["viewset", "admin"])
def test_a_client_owned_model_cannot_declare_itself_reference_data(door: Any) -> None:
    note = _toy(
        "SharedNote",
        portfolio=models.ForeignKey(Portfolio, on_delete=models.CASCADE),
        objects=_PortfolioNotes.as_manager(),
    )
    with pytest.raises(ImproperlyConfigured, match="cannot be reference data"):
        door(note)


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("door", [_viewset_for, _admin_for], ids=["viewset", "admin"])
def test_a_door_refuses_a_model_that_owns_nothing_but_never_said_it_is_reference_data(door: Any) -> None:
    # Being unrelated to clients is not assumed from the foreign keys alone: the model says so.
    glossary = _toy("Glossary", term=models.CharField(max_length=10))
    with pytest.raises(ImproperlyConfigured, match="ReferenceDataQuerySet"):
        door(glossary)


@pytest.mark.usefixtures("isolated")
@pytest.mark.parametrize("door", [_viewset_for, _admin_for], ids=["viewset", "admin"])
def test_a_door_accepts_client_owned_models_and_declared_reference_data(door: Any) -> None:
    class NoteQuerySet(ClientOwnedQuerySet[Any]):
        client_path = "portfolio__client"

    door(
        _toy(
            "ScopedNote",
            portfolio=models.ForeignKey(Portfolio, on_delete=models.CASCADE),
            objects=NoteQuerySet.as_manager(),
        )
    )
    door(_toy("Holiday", day=models.DateField(), objects=ReferenceDataQuerySet.as_manager()))


@pytest.mark.usefixtures("isolated")
def test_a_queryset_built_at_request_time_is_refused_on_first_use() -> None:
    # A viewset that builds its queryset in get_queryset() escapes the check at class creation, not this one.
    note = _toy("LateNote", client=models.ForeignKey(Client, on_delete=models.CASCADE))
    with pytest.raises(ImproperlyConfigured):
        scoped(note.objects.all(), AnonymousUser())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "path"),
    [
        (Client, ""),
        (Portfolio, "client"),
        (Transaction, "client"),
        (Allocation, "client"),
        (Asset, None),
        (Price, None),
        # An asset's images and their descriptions lead to no client: reference data, as the asset is.
        (AssetImage, None),
        (AssetDescriptionProposal, None),
        (User, None),
    ],
)
def test_owner_path_follows_foreign_keys_to_the_client(model: type[models.Model], path: str | None) -> None:
    assert owner_path(model) == path


@pytest.mark.parametrize("model", [Asset, AssetImage, AssetDescriptionProposal])
def test_an_assets_images_and_descriptions_are_declared_reference_data_as_the_asset_is(
    model: type[models.Model],
) -> None:
    # Every staff member who sees assets sees their images: said out loud by the QuerySet, not assumed.
    queryset = model._default_manager.all()
    assert getattr(type(queryset), "reference_data", False) is True
    assert queryset.visibility_key(AnonymousUser()) == "shared"  # type: ignore[attr-defined]
