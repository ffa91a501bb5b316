"""The rules of asset images, for every door (API, admin): what an upload must be, how it is stored, and how a
description is asked for, recorded, accepted or rejected.

An upload is decoded, never trusted: its format is read from its content (PNG, JPEG or WebP; not its name, not the
content type its client claims), its size and pixel count are bounded before its pixels are decoded, and its
pixels are copied into a fresh image (upright, after its EXIF orientation) that is encoded again. So the stored file
holds no metadata: no EXIF (GPS included), XMP, comments or ICC profile. (Dropping the ICC profile may shift the
colours of a wide-gamut picture slightly; a factsheet or a logo does not suffer from it, and a profile can carry
text of its own.) Animated images are refused: a factsheet has one page, and keeping only a first frame would
store something other than what was uploaded without saying so.
"""

import contextlib
import datetime
import hashlib
import io
import logging
import re
import uuid
import warnings
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image, ImageOps, UnidentifiedImageError

from holdings import services as holdings_services
from holdings.models import (
    ASSET_IMAGE_NAME_MAX_LENGTH,
    DESCRIPTION_ERROR_MAX_LENGTH,
    IN_FLIGHT,
    Asset,
    AssetDescriptionProposal,
    AssetImage,
    AssetImageContentType,
    DescriptionStatus,
)
from portfolio_site import logs
from portfolio_site.errors import ConflictError
from portfolio_site.jobs.base import TRANSIENT_ERRORS, enqueue

from .describers import DescriberError, DescriberUnavailable, configured_describer

logger = logging.getLogger(__name__)

STORAGE_FOLDER = "asset-images"
# How old a file no row names must be before the sweep deletes it: far longer than any upload's transaction.
ORPHAN_GRACE = datetime.timedelta(hours=1)
# Pillow's format name -> what we store it as. Image.open is told these alone, so no other decoder is ever tried
# on an upload (GIF, BMP, SVG through a plugin, PSD ...).
FORMATS = {
    "PNG": (AssetImageContentType.PNG, "png"),
    "JPEG": (AssetImageContentType.JPEG, "jpg"),
    "WEBP": (AssetImageContentType.WEBP, "webp"),
}
NOT_AN_IMAGE = "The file is not a PNG, JPEG or WebP image (its content decides, not its name)."
DAMAGED = "The image is damaged or truncated and cannot be read."
ANIMATED = "Animated images are not accepted: upload a single still picture."
IN_FLIGHT_ALREADY = "This image is being described already; wait for that description."
NO_DESCRIBER = "No describer is configured (ASSET_DESCRIBER is none): nothing can describe this image."
STALE = "No answer came in time: the job that described it ended without saying so. Ask again."
# The describe job's retries (holdings.tasks uses these): a stale proposal is one older than all of them.
DESCRIBE_MAX_RETRIES = 3
DESCRIBE_RETRY_BACKOFF = 30
DESCRIBE_RETRY_BACKOFF_MAX = 10 * 60
STALE_MARGIN = datetime.timedelta(minutes=10)
REENCODED_TOO_BIG = (
    "Once its metadata is stripped and it is encoded again, the image is larger than {max_bytes} bytes "
    "(ASSET_IMAGE_MAX_BYTES): upload it smaller or less compressed."
)
SIXTEEN_BIT_GREY = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
OLDER_THAN_ACCEPTED = (
    "A newer description of this asset has been accepted since this one was asked for: accepting this one would "
    "overwrite it. Reject this one, or describe the image again."
)
ONE_PER_ASSET = "Accept one description of an asset at a time: {asset} has more than one selected."
NOT_PROPOSED = "Only a proposed description can be accepted or rejected; this one is {status}."


def _file_error(message: str) -> ValidationError:
    return ValidationError({"file": [message]})


@dataclass(frozen=True)
class CleanImage:
    """An upload that passed every check, re-encoded without its metadata: what is stored."""

    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    original_name: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def safe_original_name(name: str | None) -> str:
    """The uploaded name as shown to staff: its last path segment (either separator), printable characters only,
    cut to the column's length. Display only: nothing is ever stored or looked up under it."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")
    return base[:ASSET_IMAGE_NAME_MAX_LENGTH]


def too_big(max_bytes: int) -> ValidationError:
    return _file_error(f"The file is larger than {max_bytes} bytes (ASSET_IMAGE_MAX_BYTES).")


def read_bounded(file: IO[bytes], *, max_bytes: int) -> bytes:
    """At most `max_bytes` of the upload, or a 400 on `file`. Django's upload handlers keep an upload above
    FILE_UPLOAD_MAX_MEMORY_SIZE in a temporary file (and the API's stop receiving one at the limit: see
    `holdings.images.api.LimitedUploadHandler`), so this is the only place its bytes come into memory, and no more
    than the limit (and one byte to tell) ever do."""
    size = getattr(file, "size", None)
    if size is not None and size > max_bytes:
        raise too_big(max_bytes)
    # A form's clean may have read it already; a stream that cannot seek is read from where it is.
    with contextlib.suppress(AttributeError, OSError):
        file.seek(0)
    data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_big(max_bytes)
    if not data:
        raise _file_error("The file is empty.")
    return data


def inspect_upload(file: IO[bytes], *, name: str | None = None) -> CleanImage:
    """Checks an upload and re-encodes it (see the module's docstring); ValidationError on `file` saying why not.
    Stores nothing: the admin's form calls it to validate, the upload service to store what it answers."""
    max_bytes: int = settings.ASSET_IMAGE_MAX_BYTES
    max_pixels: int = settings.ASSET_IMAGE_MAX_PIXELS
    data = read_bounded(file, max_bytes=max_bytes)
    too_many_pixels = f"The image has more than {max_pixels} pixels (ASSET_IMAGE_MAX_PIXELS)."
    with warnings.catch_warnings():
        # Pillow warns (DecompressionBombWarning) between its limit and twice it, and raises above: both refuse.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        encoded = b""
        try:
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as probe:
                # open() reads the header alone: the size is known before a single pixel is decoded, so a small
                # file claiming 50000 x 50000 is refused here without allocating its pixels.
                width, height = probe.size
                if width * height > max_pixels:
                    raise _file_error(too_many_pixels)
                if getattr(probe, "n_frames", 1) > 1:
                    raise _file_error(ANIMATED)
                probe.verify()  # checksums and structure, without decoding
            # verify() leaves the image unusable: decode it again, whole this time (a truncated file fails here).
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
                image.load()
                image_format = image.format or ""
                # In place: a copy of the pixels only when the orientation says to turn them.
                ImageOps.exif_transpose(image, in_place=True)
                if image_format in FORMATS:
                    encoded = _reencode(image, image_format)
                width, height = image.size
        except ValidationError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _file_error(too_many_pixels) from None
        except UnidentifiedImageError:
            raise _file_error(NOT_AN_IMAGE) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError):
            # What Pillow's decoders raise on a truncated or corrupt file.
            raise _file_error(DAMAGED) from None
    if image_format not in FORMATS:
        raise _file_error(NOT_AN_IMAGE)
    content_type, extension = FORMATS[image_format]
    if len(encoded) > max_bytes:
        # Encoded again (at quality 90), a heavily compressed upload can grow past the limit it passed.
        raise _file_error(REENCODED_TOO_BIG.format(max_bytes=max_bytes))
    return CleanImage(
        data=encoded,
        content_type=content_type,
        extension=extension,
        width=width,
        height=height,
        original_name=safe_original_name(name if name is not None else getattr(file, "name", "")),
    )


def _reencode(image: Image.Image, image_format: str) -> bytes:
    """The pixels alone, encoded again in the same format: the image's `info` (EXIF, XMP, ICC, comments, text
    chunks) is emptied before it is saved, and nothing is passed to the encoder, so no metadata comes along.

    Memory: the decoded pixels, plus one converted copy when the mode changes (never a copy for its own sake), plus
    the encoder's output. A 16-bit grey image is scaled to 8 bits (its values divided by 257), not clipped: Pillow's
    own conversion would turn every value above 255 white."""
    keep_alpha = image_format != "JPEG" and ("A" in image.getbands() or "transparency" in image.info)
    if image.mode in SIXTEEN_BIT_GREY:
        wide = image if image.mode == "I" else image.convert("I")
        scaled = wide.point(lambda value: value * (1 / 257))
        del wide
        image = scaled.convert("L")
        del scaled
    # Grey stays grey where the format has it (WebP has no grey mode); everything else is RGB(A).
    grey = image.mode == "L" and image_format != "WEBP"
    mode = "RGBA" if keep_alpha else ("L" if grey else "RGB")
    pixels = image if image.mode == mode else image.convert(mode)
    pixels.info = {}
    out = io.BytesIO()
    if image_format == "JPEG":
        pixels.save(out, format="JPEG", quality=90, optimize=True)
    elif image_format == "WEBP":
        pixels.save(out, format="WEBP", quality=90)
    else:
        pixels.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _store(clean: CleanImage) -> str:
    # A random name: the uploaded one is never a path here, so "../../etc/passwd.png" names nothing.
    return default_storage.save(f"{STORAGE_FOLDER}/{uuid.uuid4().hex}.{clean.extension}", ContentFile(clean.data))


def asset_image_upload(
    *,
    asset: Asset,
    file: IO[bytes],
    kind: str = AssetImage.Kind.OTHER,
    uploaded_by: Any = None,
    name: str | None = None,
) -> AssetImage:
    """Checks, strips and stores an upload as an image of `asset`, then asks the configured describer for a
    description (after the commit; with none configured, nothing is asked). ValidationError on `file` (or `kind`)
    when it is refused, and then nothing is stored."""
    return asset_image_store(asset=asset, clean=inspect_upload(file, name=name), kind=kind, uploaded_by=uploaded_by)


def asset_image_store(*, asset: Asset, clean: CleanImage, kind: str, uploaded_by: Any = None) -> AssetImage:
    """Stores an upload that `inspect_upload` passed (the admin's form inspects it while validating, and so does
    not decode it twice). See `asset_image_upload`."""
    stored = _store(clean)
    try:
        with transaction.atomic():
            image = AssetImage(
                asset=asset,
                kind=kind,
                file=stored,
                content_type=clean.content_type,
                width=clean.width,
                height=clean.height,
                size_bytes=len(clean.data),
                sha256=clean.sha256,
                original_name=clean.original_name,
                uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
            )
            image.full_clean()
            image.save()
            if configured_describer() is not None:
                _request_description(image=image, requested_by=image.uploaded_by)
    except BaseException:
        # No orphan: the row did not make it, so neither does the file.
        default_storage.delete(stored)
        raise
    # Should an enclosing transaction roll back after this returns (the admin's page is one transaction, and a later
    # row may be refused), the file stays behind, named by no row: `orphan_files_delete` sweeps those up.
    return image


def orphan_files_delete(*, older_than: datetime.timedelta = ORPHAN_GRACE) -> int:
    """Deletes the stored image files that no row names, once older than `older_than`; how many. A file is stored
    before its row commits, and Django has no hook for a rollback: a transaction rolled back around an upload
    leaves its file. A younger file is left alone, as its row may be about to commit. Idempotent."""
    try:
        _, names = default_storage.listdir(STORAGE_FOLDER)
    except FileNotFoundError:
        return 0
    named = set(AssetImage.objects.filter(file__startswith=f"{STORAGE_FOLDER}/").values_list("file", flat=True))
    cutoff = timezone.now() - older_than
    deleted = 0
    for name in names:
        path = f"{STORAGE_FOLDER}/{name}"
        if path in named:
            continue
        try:
            if default_storage.get_modified_time(path) > cutoff:
                continue
        except (NotImplementedError, OSError):
            continue  # a storage that cannot say how old a file is: keep it rather than guess
        default_storage.delete(path)
        deleted += 1
    return deleted


def asset_image_delete(*, image: AssetImage) -> None:
    """Deletes an image, its proposals, and (once that commits) its stored file."""
    name = str(image.file.name)
    with transaction.atomic():
        image.delete()
        holdings_services.stored_file_delete_on_commit(name)


def _request_description(*, image: AssetImage, requested_by: Any) -> AssetDescriptionProposal:
    from holdings.tasks import describe_asset_image  # the tasks module imports these services

    proposal = AssetDescriptionProposal(
        image=image,
        status=DescriptionStatus.PENDING,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
    )
    proposal.full_clean(validate_constraints=False)  # the database's partial unique index decides (see below)
    proposal.save()
    enqueue(describe_asset_image, requested_by=proposal.requested_by, proposal_id=proposal.pk)
    return proposal


@transaction.atomic
def asset_image_describe(*, image: AssetImage, requested_by: Any = None) -> AssetDescriptionProposal:
    """Asks the configured describer to describe `image` again (a job, after the commit). 409 when no describer
    is configured or the image is being described already."""
    if configured_describer() is None:
        raise ConflictError(NO_DESCRIBER)
    # Locks the image so that two requests at once cannot both pass the check; the database's partial unique
    # constraint (one proposal in flight per image) holds even for writers that skip this.
    AssetImage.objects.select_for_update().filter(pk=image.pk).first()
    stale_in_flight_fail(image=image)
    if AssetDescriptionProposal.objects.filter(image=image, status__in=IN_FLIGHT).exists():
        raise ConflictError(IN_FLIGHT_ALREADY)
    return _request_description(image=image, requested_by=requested_by)


@transaction.atomic
def asset_image_update(*, image: AssetImage, kind: str) -> AssetImage:
    """Changes what an image is (its kind); its file never changes: upload another and delete this one."""
    image.kind = kind
    image.full_clean()
    image.save(update_fields=["kind", "updated_at"])
    return image


def _short(message: str) -> str:
    """A failure's message as a proposal stores it: masked of every secret, the describer's key included (this job
    may fail before the describer registered it), and bounded."""
    logs.secret(settings.ASSET_DESCRIBER_API_KEY)
    return logs.redact(message)[:DESCRIPTION_ERROR_MAX_LENGTH]


def description_run(*, proposal_id: int, final_attempt: bool) -> str:
    """The job's work: describes the proposal's image and stores the whole answer, or why there is none. Answers
    the proposal's status. Idempotent: a proposal no longer in flight (already described, or its image deleted) is
    left as it is. A describer that answered something unusable fails the proposal and raises DescriberError (the
    job fails, not retried); one that is unavailable (or any error the job retries) raises for the job to retry,
    and fails the proposal on the `final_attempt` only. Any other error fails the proposal before it is raised:
    no proposal is ever left in flight by a job that ended (the one-in-flight rule would refuse every later try)."""
    proposal = AssetDescriptionProposal.objects.select_related("image__asset").filter(pk=proposal_id).first()
    if proposal is None or proposal.status not in IN_FLIGHT:
        return proposal.status if proposal is not None else "gone"
    try:
        return _describe(proposal)
    except DescriberUnavailable as error:
        if final_attempt:
            _fail(proposal, str(error))
        else:
            AssetDescriptionProposal.objects.filter(pk=proposal.pk).update(error=_short(f"Retrying: {error}"))
        raise
    except DescriberError as error:
        # Failed for good: on the proposal, and (raised) on the job's run, which does not retry it.
        _fail(proposal, str(error))
        raise
    except Exception as error:
        if final_attempt or not isinstance(error, TRANSIENT_ERRORS):
            # Its type alone: an unexpected error's message may quote anything (the answer, a request).
            _fail(proposal, f"Failed unexpectedly ({type(error).__name__}); see the job's run.")
        raise


def _describe(proposal: AssetDescriptionProposal) -> str:
    describer = configured_describer()
    if describer is None:
        return _fail(proposal, NO_DESCRIBER)
    AssetDescriptionProposal.objects.filter(pk=proposal.pk).update(status=DescriptionStatus.RUNNING)
    image = proposal.image
    with default_storage.open(str(image.file.name), "rb") as stored:
        data = stored.read()
    description = describer.describe(
        image=data, content_type=image.content_type, asset_label=f"{image.asset} ({image.asset.name})"
    )
    # Written whole in one statement, and only while the proposal is still in flight: never partial text. In a
    # savepoint, so that a refused write (a value the database will not store) leaves the proposal failable.
    with transaction.atomic():
        proposed = AssetDescriptionProposal.objects.filter(pk=proposal.pk, status__in=IN_FLIGHT).update(
            status=DescriptionStatus.PROPOSED,
            text=description.text,
            provider=description.provider[:64],
            model=description.model[:128],
            described_at=timezone.now(),
            error="",
            updated_at=timezone.now(),
        )
        if proposed:
            # The older drafts of this image no one decided on give way: only the newest can be accepted.
            AssetDescriptionProposal.objects.filter(
                image_id=proposal.image_id, status=DescriptionStatus.PROPOSED
            ).exclude(pk=proposal.pk).update(status=DescriptionStatus.SUPERSEDED, updated_at=timezone.now())
    return DescriptionStatus.PROPOSED


def stale_in_flight_after() -> datetime.timedelta:
    """How long a proposal may stay pending or running before it counts as failed: every try's longest call (twice
    the timeout: see the describer's deadline), every wait between tries, and a margin for a queue that is late."""
    tries = DESCRIBE_MAX_RETRIES + 1
    waits = sum(min(DESCRIBE_RETRY_BACKOFF * 2**n, DESCRIBE_RETRY_BACKOFF_MAX) for n in range(DESCRIBE_MAX_RETRIES))
    seconds = 2 * float(settings.ASSET_DESCRIBER_TIMEOUT) * tries + waits
    return datetime.timedelta(seconds=seconds) + STALE_MARGIN


def stale_in_flight_fail(*, image: AssetImage | None = None) -> int:
    """Fails the proposals (of `image`, or all) in flight for longer than `stale_in_flight_after`: their job died
    (a worker killed mid-call, a lost message) and will not end them. How many. Idempotent."""
    stale = AssetDescriptionProposal.objects.filter(
        status__in=IN_FLIGHT, created_at__lt=timezone.now() - stale_in_flight_after()
    )
    if image is not None:
        stale = stale.filter(image=image)
    return stale.update(status=DescriptionStatus.FAILED, error=STALE, updated_at=timezone.now())


def _fail(proposal: AssetDescriptionProposal, reason: str) -> str:
    AssetDescriptionProposal.objects.filter(pk=proposal.pk, status__in=IN_FLIGHT).update(
        status=DescriptionStatus.FAILED, error=_short(reason), updated_at=timezone.now()
    )
    return DescriptionStatus.FAILED


def _decidable(proposal: AssetDescriptionProposal) -> AssetDescriptionProposal:
    locked = AssetDescriptionProposal.objects.select_for_update().select_related("image__asset").get(pk=proposal.pk)
    if locked.status != DescriptionStatus.PROPOSED:
        raise ConflictError(NOT_PROPOSED.format(status=locked.get_status_display().lower()))
    return locked


@transaction.atomic
def description_accept(*, proposal: AssetDescriptionProposal, decided_by: Any) -> AssetDescriptionProposal:
    """Makes a proposed description the asset's (through the asset's own service: its history and caches follow)
    and marks it accepted. 409 unless it is proposed."""
    locked = _decidable(proposal)
    newer = AssetDescriptionProposal.objects.filter(
        Q(created_at__gt=locked.created_at) | Q(created_at=locked.created_at, pk__gt=locked.pk),
        image__asset_id=locked.image.asset_id,
        status=DescriptionStatus.ACCEPTED,
    )
    if newer.exists():
        # Accepting it would overwrite a newer description accepted since, without anyone seeing that it did.
        raise ConflictError(OLDER_THAN_ACCEPTED)
    holdings_services.asset_update(asset=locked.image.asset, description=locked.text)
    return _decide(locked, DescriptionStatus.ACCEPTED, decided_by)


@transaction.atomic
def description_reject(*, proposal: AssetDescriptionProposal, decided_by: Any) -> AssetDescriptionProposal:
    """Marks a proposed description rejected; the asset's description stays as it was. 409 unless it is proposed."""
    return _decide(_decidable(proposal), DescriptionStatus.REJECTED, decided_by)


def _decide(proposal: AssetDescriptionProposal, status: str, decided_by: Any) -> AssetDescriptionProposal:
    proposal.status = status
    proposal.decided_by = decided_by if getattr(decided_by, "pk", None) else None
    proposal.decided_at = timezone.now()
    proposal.full_clean()
    proposal.save()
    return proposal
