"""Asset images in the admin: uploaded on the asset's page through the upload service (its refusals shown on the
row), shown through a view that checks permissions, described again and decided by actions; lists that cost the
same queries at any length."""

from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from holdings.models import AssetDescriptionProposal, AssetImage
from holdings.tests.chat_server import Answer, ChatServer, completion
from holdings.tests.conftest import stored_files
from holdings.tests.factories import AssetDescriptionProposalFactory, AssetFactory, AssetImageFactory, image_bytes
from portfolio_site.testing import admin_messages, page_queries

pytestmark = pytest.mark.django_db


def asset_page_form(asset: Any, *uploads: tuple[str, bytes, str]) -> dict[str, Any]:
    """The asset's change form, unchanged, with a new image row per upload (name, bytes, kind)."""
    data: dict[str, Any] = {
        "ticker": asset.ticker,
        "name": asset.name,
        "exchange": asset.exchange,
        "currency": asset.currency,
        "asset_type": asset.asset_type,
        "isin": asset.isin,
        "lot_size": str(asset.lot_size),
        "description": asset.description,
        "symbols-TOTAL_FORMS": "0",
        "symbols-INITIAL_FORMS": "0",
        "images-TOTAL_FORMS": str(len(uploads)),
        "images-INITIAL_FORMS": "0",
    }
    for index, (name, content, kind) in enumerate(uploads):
        data[f"images-{index}-upload"] = SimpleUploadedFile(name, content)
        data[f"images-{index}-kind"] = kind
        data[f"images-{index}-asset"] = asset.pk
    return data


def test_operations_upload_an_image_on_the_assets_page(client: Any, operations: Any, media: Path) -> None:
    asset = AssetFactory()
    client.force_login(operations)
    url = reverse("admin:holdings_asset_change", args=[asset.pk])

    response = client.post(url, asset_page_form(asset, ("../term sheet.jpg", image_bytes("PNG"), "term_sheet")))

    assert response.status_code == 302, response.context and response.context["inline_admin_formsets"][1].formset.errors
    image = AssetImage.objects.get(asset=asset)
    assert (image.kind, image.content_type, image.original_name, image.uploaded_by) == (
        "term_sheet",
        "image/png",
        "term sheet.jpg",
        operations,
    )
    page = client.get(url).content.decode()
    assert reverse("admin:holdings_assetimage_file", args=[image.pk]) in page  # its thumbnail


def test_a_refused_upload_shows_on_its_row_and_stores_nothing(client: Any, operations: Any, media: Path) -> None:
    asset = AssetFactory()
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_asset_change", args=[asset.pk]),
        asset_page_form(asset, ("logo.png", b"GIF89a not really", "logo")),
    )

    assert response.status_code == 200
    errors = str(response.context["inline_admin_formsets"][1].formset.errors)
    assert "not a PNG, JPEG or WebP" in errors
    assert AssetImage.objects.count() == 0
    assert stored_files(media) == []


def test_the_thumbnail_is_served_to_viewers_only_with_its_type_and_nosniff(
    client: Any, advisor: Any, nobody: Any, media: Path
) -> None:
    image = AssetImageFactory()
    url = reverse("admin:holdings_assetimage_file", args=[image.pk])

    client.force_login(advisor)
    response = client.get(url)
    assert response.status_code == 200
    assert (response["Content-Type"], response["X-Content-Type-Options"]) == ("image/png", "nosniff")
    with image.file.open("rb") as stored:
        assert b"".join(response.streaming_content) == stored.read()

    client.force_login(nobody)
    assert client.get(url).status_code == 403
    client.logout()
    assert client.get(url).status_code == 302  # to the login page


def test_accepting_in_the_admin_makes_the_text_the_assets_description(
    client: Any, operations: Any, media: Path
) -> None:
    proposal = AssetDescriptionProposalFactory(text="A short-duration bond fund.")
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_assetdescriptionproposal_changelist"),
        {"action": "accept_selected", "_selected_action": [proposal.pk]},
        follow=True,
    )

    assert "Accepted 1 description(s)." in admin_messages(response)
    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by) == ("accepted", operations)
    proposal.image.asset.refresh_from_db()
    assert proposal.image.asset.description == "A short-duration bond fund."


def test_rejecting_in_the_admin_and_a_second_decision_is_refused(client: Any, operations: Any, media: Path) -> None:
    proposal = AssetDescriptionProposalFactory()
    client.force_login(operations)
    url = reverse("admin:holdings_assetdescriptionproposal_changelist")

    client.post(url, {"action": "reject_selected", "_selected_action": [proposal.pk]})
    again = client.post(url, {"action": "accept_selected", "_selected_action": [proposal.pk]}, follow=True)

    assert AssetDescriptionProposal.objects.get().status == "rejected"
    assert any("this one is rejected" in message for message in admin_messages(again))
    assert proposal.image.asset.description == ""


def test_describing_again_from_the_image_list(
    client: Any, operations: Any, describer: ChatServer, django_capture_on_commit_callbacks: Any
) -> None:
    describer.answer(Answer(completion("An infrastructure fund.")))
    image = AssetImageFactory()
    AssetDescriptionProposal.objects.filter(image=image).update(status="failed")
    client.force_login(operations)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:holdings_assetimage_changelist"),
            {"action": "describe_selected", "_selected_action": [image.pk]},
            follow=True,
        )

    assert "Asked for a description of 1 image(s)." in admin_messages(response)
    assert image.proposals.filter(status="proposed", text="An infrastructure fund.").exists()


def test_deleting_an_image_in_the_admin_deletes_its_file(
    client: Any, operations: Any, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    image = AssetImageFactory()
    client.force_login(operations)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:holdings_assetimage_delete", args=[image.pk]), {"post": "yes"})

    assert not AssetImage.objects.exists()
    assert stored_files(media) == []


@pytest.mark.parametrize(
    ("url_name", "make_rows"),
    [
        ("admin:holdings_assetimage_changelist", lambda n: AssetDescriptionProposalFactory.create_batch(n)),
        (
            "admin:holdings_assetdescriptionproposal_changelist",
            lambda n: AssetDescriptionProposalFactory.create_batch(n),
        ),
    ],
    ids=["images", "proposals"],
)
def test_the_image_and_proposal_lists_cost_the_same_queries_for_5_and_50_rows(
    client: Any, superuser: Any, count_queries: Any, media: Path, url_name: str, make_rows: Any
) -> None:
    client.force_login(superuser)
    url = reverse(url_name)
    make_rows(5)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    make_rows(45)
    many = page_queries(client, count_queries, url)

    assert len(client.get(url).context["cl"].result_list) == 50
    assert few == many


def test_the_assets_page_costs_the_same_queries_with_2_and_20_images(
    client: Any, superuser: Any, count_queries: Any, media: Path
) -> None:
    asset = AssetFactory()
    client.force_login(superuser)
    url = reverse("admin:holdings_asset_change", args=[asset.pk])
    for _ in range(2):
        AssetDescriptionProposalFactory(image=AssetImageFactory(asset=asset))
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)

    for _ in range(18):
        AssetDescriptionProposalFactory(image=AssetImageFactory(asset=asset))
    many = page_queries(client, count_queries, url)

    assert few == many


def test_the_assets_page_shows_each_images_latest_description_linking_to_its_proposals(
    client: Any, auditor: Any, media: Path
) -> None:
    proposal = AssetDescriptionProposalFactory(text="A European small-cap fund.")
    AssetDescriptionProposalFactory()  # another image's
    client.force_login(auditor)

    page = client.get(reverse("admin:holdings_asset_change", args=[proposal.image.asset_id])).content.decode()

    assert ">Proposed</a>: A European small-cap fund." in page
    link = reverse("admin:holdings_assetdescriptionproposal_changelist") + f"?image__id__exact={proposal.image_id}"
    assert link in page
    listed = client.get(link)
    assert listed.status_code == 200
    assert [row.pk for row in listed.context["cl"].result_list] == [proposal.pk]


def test_describing_more_images_than_one_click_may_asks_for_none(
    client: Any, operations: Any, describer: ChatServer, settings: Any, monkeypatch: Any
) -> None:
    from holdings.images import admin as image_admin

    monkeypatch.setattr(image_admin, "DESCRIBE_MAX_PER_CLICK", 2)
    images = [AssetImageFactory() for _ in range(3)]
    AssetDescriptionProposal.objects.update(status="failed")
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_assetimage_changelist"),
        {"action": "describe_selected", "_selected_action": [image.pk for image in images]},
        follow=True,
    )

    assert any("at most 2 images" in message for message in admin_messages(response))
    assert not AssetDescriptionProposal.objects.exclude(status="failed").exists()
    assert describer.requests == []


def test_accepting_two_descriptions_of_one_asset_in_one_click_accepts_none(
    client: Any, operations: Any, media: Path
) -> None:
    asset = AssetFactory(ticker="TWICE")
    first = AssetDescriptionProposalFactory(image=AssetImageFactory(asset=asset), text="One.")
    second = AssetDescriptionProposalFactory(image=AssetImageFactory(asset=asset), text="Two.")
    client.force_login(operations)

    response = client.post(
        reverse("admin:holdings_assetdescriptionproposal_changelist"),
        {"action": "accept_selected", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )

    assert any("one description of an asset at a time" in message for message in admin_messages(response))
    assert set(AssetDescriptionProposal.objects.values_list("status", flat=True)) == {"proposed"}
    asset.refresh_from_db()
    assert asset.description == ""


def test_an_admin_upload_past_the_byte_limit_is_not_received_past_it_and_saves_nothing(
    client: Any, operations: Any, media: Path, settings: Any, monkeypatch: Any
) -> None:
    from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler

    settings.ASSET_IMAGE_MAX_BYTES = 1000
    received: list[int] = []
    for handler in (MemoryFileUploadHandler, TemporaryFileUploadHandler):
        original = handler.receive_data_chunk

        def spy(self: Any, raw_data: bytes, start: int, original: Any = original) -> Any:
            received.append(start + len(raw_data))
            return original(self, raw_data, start)

        monkeypatch.setattr(handler, "receive_data_chunk", spy)
    asset = AssetFactory(name="Before")
    client.force_login(operations)
    form = asset_page_form(asset, ("huge.png", b"\x89PNG" + b"0" * 200_000, "logo"))
    form["name"] = "After"

    response = client.post(reverse("admin:holdings_asset_change", args=[asset.pk]), form, follow=True)

    assert any("larger than 1000 bytes" in message for message in admin_messages(response))
    assert received == []  # stopped before the handlers that keep a file got a byte
    assert AssetImage.objects.count() == 0
    asset.refresh_from_db()
    assert asset.name == "Before"  # nothing on the page was saved
    assert stored_files(media) == []


def test_the_asset_page_still_checks_the_csrf_token(operations: Any, media: Path) -> None:
    from conftest import AdminClient

    asset = AssetFactory()
    client = AdminClient(enforce_csrf_checks=True)
    client.force_login(operations)

    for form in (asset_page_form(asset), asset_page_form(asset, ("huge.png", b"0" * 200_000, "logo"))):
        response = client.post(reverse("admin:holdings_asset_change", args=[asset.pk]), form)
        assert response.status_code == 403
    assert client.post(reverse("admin:holdings_asset_add"), {}).status_code == 403
