"""The API onto asset images: uploads as multipart, downloads as the stored bytes with their type, describing,
accepting and rejecting; each role as the asset's permissions say; lists that cost the same queries at any length."""

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadhandler import MemoryFileUploadHandler
from rest_framework.test import APIClient

from accounts.tests.factories import OperationsFactory
from holdings.models import AssetDescriptionProposal, AssetImage
from holdings.tests.chat_server import Answer, ChatServer, completion
from holdings.tests.conftest import stored_files
from holdings.tests.factories import AssetDescriptionProposalFactory, AssetFactory, AssetImageFactory, image_bytes

pytestmark = pytest.mark.django_db


def images_url(asset: Any) -> str:
    return f"/api/v1/assets/{asset.pk}/images/"


def proposals_url(asset: Any) -> str:
    return f"/api/v1/assets/{asset.pk}/description-proposals/"


def post_upload(client: APIClient, asset: Any, data: bytes, name: str = "sheet.png", kind: str = "factsheet") -> Any:
    file = io.BytesIO(data)
    file.name = name
    return client.post(images_url(asset), {"file": file, "kind": kind}, format="multipart")


def test_operations_upload_an_image_as_multipart_and_get_it_back(operations: Any, api: Any, media: Path) -> None:
    asset = AssetFactory()

    response = post_upload(api(operations), asset, image_bytes("JPEG", size=(30, 20)), name="../../etc/passwd.png")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["asset"], body["kind"], body["content_type"]) == (asset.pk, "factsheet", "image/jpeg")
    assert (body["width"], body["height"], body["original_name"]) == (30, 20, "passwd.png")
    assert body["uploaded_by"] == operations.pk
    assert body["proposals"] == []  # no describer configured
    assert "file" not in body  # no storage path or URL: the file is read through the API's own view
    listed = api(operations).get(images_url(asset)).json()
    assert [row["id"] for row in listed["results"]] == [body["id"]]


def test_a_refused_upload_is_a_400_on_file_and_stores_nothing(operations: Any, api: Any, media: Path) -> None:
    asset = AssetFactory()

    response = post_upload(api(operations), asset, b"plain text pretending", name="logo.png")

    assert response.status_code == 400
    assert list(response.json()) == ["file"]
    assert "not a PNG, JPEG or WebP" in response.json()["file"][0]
    assert AssetImage.objects.count() == 0
    assert stored_files(media) == []


def test_an_upload_over_the_byte_limit_is_a_400_on_file(operations: Any, api: Any, media: Path, settings: Any) -> None:
    settings.ASSET_IMAGE_MAX_BYTES = 200

    response = post_upload(api(operations), AssetFactory(), image_bytes("PNG", size=(300, 300)))

    assert response.status_code == 400
    assert "ASSET_IMAGE_MAX_BYTES" in response.json()["file"][0]


def test_an_upload_without_a_file_or_with_an_unknown_kind_is_a_400(operations: Any, api: Any, media: Path) -> None:
    asset = AssetFactory()
    assert "file" in api(operations).post(images_url(asset), {}, format="multipart").json()
    assert "kind" in post_upload(api(operations), asset, image_bytes(), kind="poster").json()


def test_the_file_is_served_with_its_type_nosniff_and_a_name_of_ours(
    advisor: Any, operations: Any, api: Any, media: Path
) -> None:
    image = AssetImageFactory(original_name='evil"; filename="x.html')

    response = api(advisor).get(f"{images_url(image.asset)}{image.pk}/file/")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == f'inline; filename="asset-{image.asset_id}-image-{image.pk}.png"'
    with image.file.open("rb") as stored:
        assert b"".join(response.streaming_content) == stored.read()


def test_an_image_is_found_only_under_its_own_asset(advisor: Any, api: Any, media: Path) -> None:
    image = AssetImageFactory()
    other = AssetFactory()

    assert api(advisor).get(f"{images_url(other)}{image.pk}/").status_code == 404
    assert api(advisor).get(f"{images_url(other)}{image.pk}/file/").status_code == 404
    assert api(advisor).get("/api/v1/assets/999999/images/").status_code == 404


def test_deleting_an_image_deletes_its_file(
    operations: Any, api: Any, media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    image = AssetImageFactory()

    with django_capture_on_commit_callbacks(execute=True):
        response = api(operations).delete(f"{images_url(image.asset)}{image.pk}/")

    assert response.status_code == 204
    assert stored_files(media) == []


def test_accepting_a_proposal_makes_it_the_assets_description_in_its_history(
    operations: Any, api: Any, media: Path
) -> None:
    proposal = AssetDescriptionProposalFactory(text="A global equity index fund.")
    asset = proposal.image.asset

    response = api(operations).post(f"{proposals_url(asset)}{proposal.pk}/accept/")

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["decided_by"]) == ("accepted", operations.pk)
    asset.refresh_from_db()
    assert asset.description == "A global equity index fund."
    assert asset.history.latest().description == "A global equity index fund."
    assert api(operations).get(f"/api/v1/assets/{asset.pk}/").json()["description"] == asset.description
    again = api(operations).post(f"{proposals_url(asset)}{proposal.pk}/accept/")
    assert again.status_code == 409


def test_rejecting_a_proposal_leaves_the_description_as_it_was(operations: Any, api: Any, media: Path) -> None:
    proposal = AssetDescriptionProposalFactory(image__asset__description="Written by hand.")
    asset = proposal.image.asset

    response = api(operations).post(f"{proposals_url(asset)}{proposal.pk}/reject/")

    assert response.json()["status"] == "rejected"
    asset.refresh_from_db()
    assert asset.description == "Written by hand."
    assert api(operations).post(f"{proposals_url(asset)}{proposal.pk}/accept/").status_code == 409


def test_a_failed_or_pending_proposal_cannot_be_accepted(operations: Any, api: Any, media: Path) -> None:
    image = AssetImageFactory()
    pending = AssetDescriptionProposal.objects.create(image=image, status="pending")

    assert api(operations).post(f"{proposals_url(image.asset)}{pending.pk}/accept/").status_code == 409


def test_describing_again_runs_the_describer_and_answers_202(
    operations: Any, api: Any, describer: ChatServer, django_capture_on_commit_callbacks: Any
) -> None:
    describer.answer(Answer(completion("A money market fund.")))
    image = AssetImageFactory()  # uploaded outside a commit: its first job never ran
    AssetDescriptionProposal.objects.filter(image=image).update(status="failed")

    with django_capture_on_commit_callbacks(execute=True):
        response = api(operations).post(f"{images_url(image.asset)}{image.pk}/describe/")

    assert response.status_code == 202, response.content
    proposal = AssetDescriptionProposal.objects.get(pk=response.json()["id"])
    assert (proposal.status, proposal.text) == ("proposed", "A money market fund.")


def test_describing_with_no_describer_configured_is_a_409(operations: Any, api: Any, media: Path) -> None:
    image = AssetImageFactory()

    response = api(operations).post(f"{images_url(image.asset)}{image.pk}/describe/")

    assert response.status_code == 409
    assert "No describer" in response.json()["detail"]


# --- Who may -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["advisor", "auditor", "operations", "superuser"])
def test_every_staff_role_reads_images_and_proposals(role: str, request: Any, api: Any, media: Path) -> None:
    user = request.getfixturevalue(role)
    proposal = AssetDescriptionProposalFactory()
    asset = proposal.image.asset

    assert api(user).get(images_url(asset)).status_code == 200
    assert api(user).get(f"{images_url(asset)}{proposal.image_id}/file/").status_code == 200
    assert api(user).get(proposals_url(asset)).json()["count"] == 1


@pytest.mark.parametrize("role", ["advisor", "auditor"])
def test_those_who_may_not_change_assets_may_not_upload_delete_describe_or_decide(
    role: str, request: Any, api: Any, media: Path
) -> None:
    user = request.getfixturevalue(role)
    proposal = AssetDescriptionProposalFactory()
    image, asset = proposal.image, proposal.image.asset
    client = api(user)

    assert post_upload(client, asset, image_bytes()).status_code == 403
    assert client.delete(f"{images_url(asset)}{image.pk}/").status_code == 403
    assert client.post(f"{images_url(asset)}{image.pk}/describe/").status_code == 403
    assert client.post(f"{proposals_url(asset)}{proposal.pk}/accept/").status_code == 403
    assert client.post(f"{proposals_url(asset)}{proposal.pk}/reject/").status_code == 403
    assert AssetImage.objects.count() == 1
    assert AssetDescriptionProposal.objects.get().status == "proposed"


def test_staff_in_no_group_see_nothing_and_anonymous_callers_are_asked_to_sign_in(
    nobody: Any, api: Any, media: Path
) -> None:
    image = AssetImageFactory()

    assert api(nobody).get(images_url(image.asset)).status_code == 403
    assert api(nobody).get(f"{images_url(image.asset)}{image.pk}/file/").status_code == 403
    anonymous = APIClient()
    assert anonymous.get(images_url(image.asset)).status_code == 401
    assert anonymous.get(f"{images_url(image.asset)}{image.pk}/file/").status_code == 401
    assert post_upload(anonymous, image.asset, image_bytes()).status_code == 401


# --- Query counts ------------------------------------------------------------------------------------------------


def test_the_image_list_costs_the_same_queries_at_any_length(
    advisor: Any, api: Any, media: Path, assert_list_queries_constant: Any
) -> None:
    asset = AssetFactory()

    def images(count: int) -> None:
        for _ in range(count):
            AssetDescriptionProposalFactory(image=AssetImageFactory(asset=asset))

    assert_list_queries_constant(api(advisor), images_url(asset), images)


def test_the_proposal_list_costs_the_same_queries_at_any_length(
    advisor: Any, api: Any, media: Path, assert_list_queries_constant: Any
) -> None:
    image = AssetImageFactory()

    def proposals(count: int) -> None:
        AssetDescriptionProposalFactory.create_batch(count, image=image)

    assert_list_queries_constant(api(advisor), proposals_url(image.asset), proposals)


def test_an_assets_description_may_also_be_written_by_hand(operations: Any, api: Any) -> None:
    body = {"ticker": "VWRL", "name": "Vanguard FTSE All-World", "currency": "USD", "description": "By hand."}

    created = api(operations).post("/api/v1/assets/", body, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["description"] == "By hand."


def test_an_upload_past_the_byte_limit_is_not_received_past_it(
    operations: Any, api: Any, media: Path, settings: Any, monkeypatch: Any
) -> None:
    settings.ASSET_IMAGE_MAX_BYTES = 1000
    received: list[int] = []
    original = MemoryFileUploadHandler.receive_data_chunk

    def spy(self: Any, raw_data: bytes, start: int) -> Any:
        received.append(start + len(raw_data))
        return original(self, raw_data, start)

    monkeypatch.setattr(MemoryFileUploadHandler, "receive_data_chunk", spy)
    monkeypatch.setattr("holdings.images.services.inspect_upload", lambda *a, **k: pytest.fail("decoded it"))

    response = post_upload(api(operations), AssetFactory(), b"\x89PNG" + b"0" * 200_000)

    assert response.status_code == 400
    assert response.json() == {"file": ["The file is larger than 1000 bytes (ASSET_IMAGE_MAX_BYTES)."]}
    assert received == []  # stopped before the handlers that keep a file (in memory or on disk) got a byte
    assert stored_files(media) == []


def test_asking_for_descriptions_is_throttled_per_user(
    operations: Any, api: Any, describer: ChatServer, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "asset_describe": "3/min"},
    }
    image = AssetImageFactory()
    url = f"{images_url(image.asset)}{image.pk}/describe/"
    client = api(operations)

    answers = [client.post(url).status_code for _ in range(4)]

    assert 429 not in answers[:3]
    assert answers[3] == 429
    assert client.post(url).has_header("Retry-After")
    assert api(OperationsFactory()).post(url).status_code != 429  # another user has a count of their own


def test_the_describe_rate_defaults_to_ten_a_minute() -> None:
    from django.conf import settings

    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["asset_describe"] == "10/min"
