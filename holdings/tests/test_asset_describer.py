"""The describer against a loopback server that answers as the chat-completions protocol does: a whole answer
becomes a proposal; errors, timeouts and oversized or cut answers are recorded (on the proposal and the job's run)
and retried when a later try may succeed; no partial text is ever stored; the key is found nowhere."""

import base64
import datetime
import io
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection as db
from django.utils import timezone

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
        # No Content-Length: the body ends when the connection does, and only the read's own bound refuses it.
        pytest.param(
            Answer(completion("x" * 5000), content_length=None), "larger than 4096", id="oversized-unannounced"
        ),
        pytest.param(Answer(completion(), content_length="abc"), "Content-Length is not a number", id="bad-length"),
        pytest.param(Answer(completion(), content_length="-5"), "Content-Length is negative", id="negative-length"),
        # Nested deeper than Python's stack: json.loads raises RecursionError, not ValueError.
        pytest.param(Answer(b"[" * 4000), "not JSON", id="deeply-nested"),
        pytest.param(Answer({}, status=302, location="http://127.0.0.1:9/elsewhere"), "not followed", id="redirect"),
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


# --- What the review found: redirects, slow drips, control characters, unexpected errors -----------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_so_the_key_never_reaches_another_host(
    describer: ChatServer, chat_server_factory: Any, status: int
) -> None:
    elsewhere = chat_server_factory()
    describer.answer(Answer({}, status=status, location=f"{elsewhere.base_url}/chat/completions"))
    adapter = OpenAIDescriber(base_url=describer.base_url, api_key=DESCRIBER_KEY, model="m", timeout=1)

    with pytest.raises(DescriberError, match="not followed") as refused:
        adapter.describe(image=b"x", content_type="image/png", asset_label="A")

    assert not isinstance(refused.value, DescriberUnavailable)  # asking again is redirected again
    assert elsewhere.requests == []
    assert len(describer.requests) == 1


def test_a_server_dripping_its_answer_is_cut_off_at_the_timeout_and_retried(describer: ChatServer) -> None:
    # Each byte comes well within the timeout, the whole answer far past it.
    describer.answer(Answer(completion("A fund."), drip=0.05))
    adapter = OpenAIDescriber(base_url=describer.base_url, api_key=DESCRIBER_KEY, model="m", timeout=0.5)

    started = time.monotonic()
    with pytest.raises(DescriberUnavailable, match=r"within 0\.5 s"):
        adapter.describe(image=b"x", content_type="image/png", asset_label="A")

    assert time.monotonic() - started < 2.0


def test_control_characters_are_stripped_from_the_answer_newlines_and_tabs_kept(
    describer: ChatServer, django_capture_on_commit_callbacks: Any
) -> None:
    # A NUL is refused by PostgreSQL (the proposal would stay running) and stored by SQLite: neither, now.
    describer.answer(Answer(completion("A fund\x00 of\x07 funds.\r\nSecond\tline\ud800.")))

    image = upload(django_capture_on_commit_callbacks)

    proposal = proposal_of(image)
    assert (proposal.status, proposal.text) == ("proposed", "A fund of funds.\nSecond\tline.")


def test_an_answer_of_control_characters_only_is_empty(describer: ChatServer) -> None:
    describer.answer(Answer(completion("\x00\x01 ")))
    adapter = OpenAIDescriber(base_url=describer.base_url, api_key=DESCRIBER_KEY, model="m", timeout=1)

    with pytest.raises(DescriberError, match="empty"):
        adapter.describe(image=b"x", content_type="image/png", asset_label="A")


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_an_unexpected_error_fails_the_proposal_so_it_can_be_described_again(
    describer: ChatServer, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom {DESCRIBER_KEY}")

    monkeypatch.setattr(OpenAIDescriber, "describe", explode)

    image = upload(django_capture_on_commit_callbacks)

    proposal = proposal_of(image)
    assert proposal.status == "failed"
    assert "RuntimeError" in proposal.error
    assert DESCRIBER_KEY not in proposal.error
    assert JobRun.objects.get(task="holdings.describe_asset_image").outcome == "failed"
    monkeypatch.undo()
    with django_capture_on_commit_callbacks(execute=True):
        again = services.asset_image_describe(image=image)  # not a 409: nothing is in flight
    again.refresh_from_db()
    assert again.status == "proposed"


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_a_database_refusing_the_answer_fails_the_proposal(
    describer: ChatServer, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a NUL did on PostgreSQL: the final write raises. The proposal must not stay running.
    from django.db import DataError
    from django.db.models import QuerySet

    real_update = QuerySet.update

    def update(self: QuerySet[Any], **kwargs: Any) -> int:
        if kwargs.get("status") == "proposed":
            raise DataError("invalid byte sequence")
        return real_update(self, **kwargs)

    monkeypatch.setattr(QuerySet, "update", update)

    image = upload(django_capture_on_commit_callbacks)

    proposal = proposal_of(image)
    assert proposal.status == "failed"
    assert "DataError" in proposal.error


@pytest.mark.usefixtures("jobs_as_on_a_worker")
def test_a_retried_error_fails_the_proposal_on_the_last_try(
    describer: ChatServer, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(self: Any, **kwargs: Any) -> Any:
        raise ConnectionResetError("reset")

    monkeypatch.setattr(OpenAIDescriber, "describe", unreachable)

    image = upload(django_capture_on_commit_callbacks)

    proposal = proposal_of(image)
    assert proposal.status == "failed"
    assert "ConnectionResetError" in proposal.error
    run = JobRun.objects.get(task="holdings.describe_asset_image")
    assert (run.outcome, run.retries) == ("failed", 3)


def test_a_proposal_in_flight_too_long_counts_as_failed(
    describer: ChatServer, django_capture_on_commit_callbacks: Any
) -> None:
    image = upload(django_capture_on_commit_callbacks)
    stuck = services.asset_image_describe(image=image)  # its job never runs: a worker died with it
    AssetDescriptionProposal.objects.filter(pk=stuck.pk).update(status="running")

    with pytest.raises(services.ConflictError):
        services.asset_image_describe(image=image)  # young: still in flight
    AssetDescriptionProposal.objects.filter(pk=stuck.pk).update(
        created_at=timezone.now() - services.stale_in_flight_after() - datetime.timedelta(seconds=1)
    )
    again = services.asset_image_describe(image=image)

    stuck.refresh_from_db()
    assert (stuck.status, stuck.error) == ("failed", services.STALE)
    assert again.status == "pending"


def test_the_nightly_sweep_fails_proposals_in_flight_too_long(
    describer: ChatServer, django_capture_on_commit_callbacks: Any
) -> None:
    from holdings.tasks import purge_orphan_image_files

    image = upload(django_capture_on_commit_callbacks)
    young = services.asset_image_describe(image=image)
    AssetDescriptionProposal.objects.filter(pk=young.pk).update(
        created_at=timezone.now() - services.stale_in_flight_after() - datetime.timedelta(seconds=1)
    )

    purge_orphan_image_files.delay().get()

    young.refresh_from_db()
    assert young.status == "failed"
