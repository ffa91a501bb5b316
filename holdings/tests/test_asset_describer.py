"""The describer against a loopback server that answers as the chat-completions protocol does: a whole answer
becomes a proposal; errors, timeouts and oversized or cut answers are recorded (on the proposal and the job's run)
and retried when a later try may succeed; no partial text is ever stored; the key is found nowhere."""

import base64
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from django.db import connection as db

from holdings.images import services
from holdings.images.describers import DescriberError, DescriberUnavailable, OpenAIDescriber
from holdings.models import AssetDescriptionProposal, AssetImage
from holdings.tests.chat_server import Answer, ChatServer, completion
from holdings.tests.conftest import DESCRIBER_KEY
from holdings.tests.factories import AssetFactory, image_bytes
from portfolio_site.jobs.models import JobRun

pytestmark = pytest.mark.django_db


def upload(capture: Any, **kwargs: Any) -> AssetImage:
    """An upload, with the jobs it enqueues run once it commits (as a worker would)."""
    with capture(execute=True):
        return services.asset_image_upload(
            asset=AssetFactory(ticker="WORLD", name="World Equity Fund"),
            file=io.BytesIO(image_bytes("PNG")),
            name="factsheet.png",
            **kwargs,
        )


def proposal_of(image: AssetImage) -> AssetDescriptionProposal:
    return AssetDescriptionProposal.objects.get(image=image)


def test_a_whole_answer_becomes_a_proposal_with_its_provider_model_and_time(
    describer: ChatServer, django_capture_on_commit_callbacks: Any, operations: Any
) -> None:
    describer.answer(Answer(completion("  A global equity index fund.  ")))

    image = upload(django_capture_on_commit_callbacks, uploaded_by=operations)

    proposal = proposal_of(image)
    assert proposal.status == "proposed"
    assert (proposal.text, proposal.provider, proposal.model) == (
        "A global equity index fund.",
        "openai",
        "vision-test",
    )
    assert proposal.described_at is not None
    assert proposal.requested_by == operations
    assert image.asset.description == ""  # a proposal only, until staff accept it
    (request,) = describer.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {DESCRIBER_KEY}"
    assert request.body["model"] == "vision-test"
    assert request.body["max_tokens"] > 0
    system, user = request.body["messages"]
    assert system["role"] == "system"
    text, picture = user["content"]
    assert text["type"] == "text"
    assert "WORLD" in text["text"]
    prefix = "data:image/png;base64,"
    assert picture["image_url"]["url"].startswith(prefix)
    with image.file.open("rb") as stored:
        assert base64.b64decode(picture["image_url"]["url"].removeprefix(prefix)) == stored.read()
    run = JobRun.objects.get(task="holdings.describe_asset_image")
    assert (run.outcome, run.arguments) == ("succeeded", {"proposal_id": proposal.pk})


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_a_server_error_is_retried_and_the_next_answer_is_kept(
    describer: ChatServer, django_capture_on_commit_callbacks: Any
) -> None:
    describer.answer(Answer({"error": {"message": "overloaded"}}, status=500), Answer(completion("A bond fund.")))

    image = upload(django_capture_on_commit_callbacks)

    proposal = proposal_of(image)
    assert (proposal.status, proposal.text, proposal.error) == ("proposed", "A bond fund.", "")
    assert len(describer.requests) == 2
    run = JobRun.objects.get(task="holdings.describe_asset_image")
    assert (run.outcome, run.retries) == ("succeeded", 1)


@pytest.mark.usefixtures("jobs_as_on_a_worker")
@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        pytest.param(Answer({"error": {"message": "bad image"}}, status=400), "HTTP 400", id="client-error"),
        pytest.param(Answer(b"<html>not json</html>"), "not JSON", id="not-json"),
        pytest.param(Answer({"choices": []}), "no choices[0].message.content", id="no-choice"),
        pytest.param(Answer(completion(None)), "empty", id="no-content"),
        pytest.param(Answer(completion("A fund that inv", finish_reason="length")), "cut at its length", id="cut"),
        pytest.param(Answer(completion("x" * 5000)), "4096", id="oversized-body"),
        pytest.param(Answer(completion("y" * 600)), "longer than 500 characters", id="over-max-chars"),
    ],
)
def test_an_unusable_answer_fails_at_once_and_stores_no_text(
    describer: ChatServer, django_capture_on_commit_callbacks: Any, answer: Answer, reason: str
) -> None:
    describer.answer(answer)

    image = upload(django_capture_on_commit_callbacks)

    proposal = proposal_of(image)
    assert (proposal.status, proposal.text) == ("failed", "")
    assert reason in proposal.error
    assert len(describer.requests) == 1  # not retried: asking again gets the same answer
    run = JobRun.objects.get(task="holdings.describe_asset_image")
    assert run.outcome == "failed"
    assert reason in run.error


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_a_slow_service_times_out_is_retried_and_then_fails_without_blocking_the_upload(
    describer: ChatServer, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.ASSET_DESCRIBER_TIMEOUT = 0.2
    describer.answer(Answer(completion("too late"), delay=0.6))

    image = upload(django_capture_on_commit_callbacks)

    assert AssetImage.objects.filter(pk=image.pk).exists()
    proposal = proposal_of(image)
    assert (proposal.status, proposal.text) == ("failed", "")
    assert "timed out" in proposal.error
    run = JobRun.objects.get(task="holdings.describe_asset_image")
    assert (run.outcome, run.retries) == ("failed", 3)
    assert len(describer.requests) == 4


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_an_unreachable_service_never_blocks_the_upload(
    describer: ChatServer, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    describer.stop()  # nothing listens on its port any more

    image = upload(django_capture_on_commit_callbacks)

    assert AssetImage.objects.filter(pk=image.pk).exists()
    proposal = proposal_of(image)
    assert proposal.status == "failed"
    assert "Cannot reach" in proposal.error


def test_a_proposal_already_described_is_not_described_again(
    describer: ChatServer, django_capture_on_commit_callbacks: Any
) -> None:
    image = upload(django_capture_on_commit_callbacks)
    proposal = proposal_of(image)

    assert services.description_run(proposal_id=proposal.pk, final_attempt=False) == "proposed"
    assert len(describer.requests) == 1


def test_asking_again_while_a_description_is_in_flight_is_a_conflict(
    describer: ChatServer, django_capture_on_commit_callbacks: Any
) -> None:
    image = upload(django_capture_on_commit_callbacks)
    services.asset_image_describe(image=image)  # pending: its job runs only once this commits

    with pytest.raises(services.ConflictError, match="being described already"):
        services.asset_image_describe(image=image)


def test_a_429_and_a_408_are_worth_retrying_other_4xx_are_not(describer: ChatServer) -> None:
    adapter = OpenAIDescriber(base_url=describer.base_url, api_key=DESCRIBER_KEY, model="m", timeout=1)
    for status, expected in ((429, DescriberUnavailable), (408, DescriberUnavailable), (503, DescriberUnavailable)):
        describer.answer(Answer({}, status=status))
        with pytest.raises(expected):
            adapter.describe(image=b"x", content_type="image/png", asset_label="A")
    for status in (401, 404, 422):
        describer.answer(Answer({}, status=status))
        with pytest.raises(DescriberError) as refused:
            adapter.describe(image=b"x", content_type="image/png", asset_label="A")
        assert not isinstance(refused.value, DescriberUnavailable)


# --- The key is found nowhere ----------------------------------------------------------------------------------


def _every_stored_text() -> str:
    cells = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names():
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")
            cells.extend(str(cell) for row in cursor.fetchall() for cell in row)
    return "\n".join(cells)


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_the_api_key_appears_in_no_log_job_run_response_or_table(
    describer: ChatServer,
    django_capture_on_commit_callbacks: Any,
    caplog: pytest.LogCaptureFixture,
    operations: Any,
    api: Any,
    media: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    # A service that echoes the key in its error (some do, quoting the request), then one that times out, then one
    # that answers: every path the key could take into a message.
    describer.answer(
        Answer({"error": {"message": f"Incorrect API key provided: {DESCRIBER_KEY}"}}, status=401),
    )
    asset = AssetFactory()
    with django_capture_on_commit_callbacks(execute=True):
        created = api(operations).post(
            f"/api/v1/assets/{asset.pk}/images/",
            {"file": io.BytesIO(image_bytes("PNG")), "kind": "factsheet"},
            format="multipart",
        )
    assert created.status_code == 201, created.content
    seen.append(created.content.decode())
    image_id = created.json()["id"]
    describer.answer(Answer({"error": f"busy, key={DESCRIBER_KEY}"}, status=503), Answer(completion("A fund.")))
    with django_capture_on_commit_callbacks(execute=True):
        described = api(operations).post(f"/api/v1/assets/{asset.pk}/images/{image_id}/describe/")
    seen.append(described.content.decode())
    seen.append(api(operations).get(f"/api/v1/assets/{asset.pk}/images/").content.decode())
    seen.append(api(operations).get(f"/api/v1/assets/{asset.pk}/description-proposals/").content.decode())
    seen.append(caplog.text)
    seen.extend(record.getMessage() for record in caplog.records)
    seen.extend(f"{run.arguments} {run.error}" for run in JobRun.objects.all())
    seen.append(_every_stored_text())

    statuses = set(AssetDescriptionProposal.objects.values_list("status", flat=True))
    assert statuses == {"failed", "proposed"}
    assert JobRun.objects.filter(task="holdings.describe_asset_image").count() == 2
    assert all(request.headers["Authorization"] == f"Bearer {DESCRIBER_KEY}" for request in describer.requests)
    for text in seen:
        assert DESCRIBER_KEY not in text
