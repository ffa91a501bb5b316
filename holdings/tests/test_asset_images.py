"""Asset image uploads: the content decides what a file is, limits hold before decoding, metadata never reaches
storage, the stored name is ours, and a refused or failed upload leaves nothing behind."""

import datetime
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from PIL import ExifTags, Image, PngImagePlugin

from holdings import services as holdings_services
from holdings.images import services
from holdings.models import AssetDescriptionProposal, AssetImage
from holdings.tasks import purge_orphan_image_files
from holdings.tests.conftest import stored_files
from holdings.tests.factories import AssetDescriptionProposalFactory, AssetFactory, AssetImageFactory, image_bytes

pytestmark = pytest.mark.django_db


def upload(data: bytes, name: str = "factsheet.png", **kwargs: Any) -> AssetImage:
    return services.asset_image_upload(
        asset=kwargs.pop("asset", None) or AssetFactory(), file=io.BytesIO(data), name=name, **kwargs
    )


def refusal(data: bytes, name: str = "upload.png") -> str:
    with pytest.raises(ValidationError) as refused:
        upload(data, name)
    assert set(refused.value.message_dict) == {"file"}
    return " ".join(refused.value.message_dict["file"])


def stored_image(image: AssetImage) -> Image.Image:
    with default_storage.open(image.file.name, "rb") as file:
        picture = Image.open(io.BytesIO(file.read()))
        picture.load()
    return picture


@pytest.mark.parametrize(
    ("fmt", "content_type", "extension"),
    [("PNG", "image/png", "png"), ("JPEG", "image/jpeg", "jpg"), ("WEBP", "image/webp", "webp")],
)
def test_png_jpeg_and_webp_are_stored_with_their_content_type_and_dimensions(
    media: Path, fmt: str, content_type: str, extension: str
) -> None:
    image = upload(image_bytes(fmt, size=(64, 48)), name=f"sheet.{extension}", kind=AssetImage.Kind.LOGO)

    image.refresh_from_db()
    assert (image.content_type, image.width, image.height, image.kind) == (content_type, 64, 48, "logo")
    assert image.file.name.endswith(f".{extension}")
    assert stored_image(image).format == fmt
    with default_storage.open(image.file.name, "rb") as file:
        data = file.read()
    assert image.size_bytes == len(data)
    assert image.sha256 == services.hashlib.sha256(data).hexdigest()


def test_the_content_decides_not_the_name_a_png_named_jpg_is_a_png(media: Path) -> None:
    image = upload(image_bytes("PNG"), name="photo.jpg")

    assert image.content_type == "image/png"
    assert image.file.name.endswith(".png")
    assert image.original_name == "photo.jpg"


def _apng() -> bytes:
    out = io.BytesIO()
    frames = [Image.new("RGB", (10, 10), color) for color in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(out, format="PNG", save_all=True, append_images=frames[1:])
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        pytest.param(image_bytes("GIF"), "logo.gif", "not a PNG, JPEG or WebP", id="gif"),
        pytest.param(image_bytes("BMP"), "logo.png", "not a PNG, JPEG or WebP", id="bmp-named-png"),
        pytest.param(
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
            "logo.svg",
            "not a PNG, JPEG or WebP",
            id="svg",
        ),
        pytest.param(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "sheet.pdf", "not a PNG", id="pdf"),
        pytest.param(b"just some text, not a picture\n", "photo.png", "not a PNG, JPEG or WebP", id="text-named-png"),
        pytest.param(image_bytes("PNG", size=(200, 200))[:300], "cut.png", "damaged or truncated", id="truncated-png"),
        pytest.param(
            image_bytes("JPEG", size=(200, 200))[:400], "cut.jpg", "damaged or truncated", id="truncated-jpeg"
        ),
        pytest.param(_apng(), "moving.png", "Animated images are not accepted", id="animated-png"),
        pytest.param(b"", "empty.png", "empty", id="empty"),
    ],
)
def test_anything_but_a_whole_still_png_jpeg_or_webp_is_refused_on_file_and_nothing_is_stored(
    media: Path, data: bytes, name: str, reason: str
) -> None:
    assert reason in refusal(data, name)
    assert AssetImage.objects.count() == 0
    assert stored_files(media) == []


def test_a_file_over_the_byte_limit_is_refused_before_it_is_decoded(
    media: Path, settings: Any, monkeypatch: Any
) -> None:
    settings.ASSET_IMAGE_MAX_BYTES = 100
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("decoded an upload over the limit"))

    assert "larger than 100 bytes" in refusal(image_bytes("PNG", size=(100, 100)))
    assert stored_files(media) == []


def test_the_bytes_read_from_an_upload_stop_at_the_limit() -> None:
    class Endless(io.RawIOBase):
        """An upload whose size is not known and that never ends."""

        read_sizes: list[int] = []

        def read(self, size: int = -1) -> bytes:
            self.read_sizes.append(size)
            return b"x" * size

    stream = Endless()
    with pytest.raises(ValidationError):
        services.read_bounded(stream, max_bytes=1000)  # type: ignore[arg-type]
    assert stream.read_sizes == [1001]


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width` x `height` pixels: a decompression bomb's shape, without its bulk."""
    data = bytearray(image_bytes("PNG", size=(1, 1)))
    ihdr_at = data.index(b"IHDR")
    data[ihdr_at + 4 : ihdr_at + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr_at : ihdr_at + 17]))
    data[ihdr_at + 17 : ihdr_at + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_a_decompression_bomb_is_refused_from_its_header_without_decoding_its_pixels(
    media: Path, monkeypatch: Any
) -> None:
    bomb = _png_claiming(50_000, 50_000)
    assert len(bomb) < 1000
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded the bomb's pixels"))

    assert "more than" in refusal(bomb, "bomb.png")
    assert stored_files(media) == []


def test_an_image_over_the_pixel_limit_is_refused_even_below_pillows_own(media: Path, settings: Any) -> None:
    settings.ASSET_IMAGE_MAX_PIXELS = 1000

    assert "more than 1000 pixels" in refusal(image_bytes("PNG", size=(50, 50)))
    upload(image_bytes("PNG", size=(40, 25)))  # 1000 pixels: at the limit, accepted


def test_pillows_bomb_warning_is_a_refusal_not_a_warning(media: Path, settings: Any, monkeypatch: Any) -> None:
    # Between Pillow's MAX_IMAGE_PIXELS and twice it, Pillow only warns: that warning refuses the upload too.
    settings.ASSET_IMAGE_MAX_PIXELS = 10**9
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)

    assert "more than" in refusal(image_bytes("PNG", size=(50, 50)))


def _jpeg_with_gps_rotated() -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # the camera was turned: show it rotated 90 degrees clockwise
    exif[ExifTags.Base.Make] = "Spy Cam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.0)
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (10, 120, 200)).save(out, format="JPEG", exif=exif)
    return out.getvalue()


def test_exif_and_gps_are_stripped_and_the_orientation_is_applied(media: Path) -> None:
    original = _jpeg_with_gps_rotated()
    with Image.open(io.BytesIO(original)) as before:
        assert before.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the test's image does carry a position

    image = upload(original, name="site-visit.jpg")

    stored = stored_image(image)
    assert not stored.getexif()
    assert "exif" not in stored.info
    assert "icc_profile" not in stored.info
    assert stored.size == (20, 40) == (image.width, image.height)  # upright: turned as its EXIF said
    with default_storage.open(image.file.name, "rb") as file:
        raw = file.read()
    assert b"Spy Cam" not in raw
    assert b"Exif" not in raw


def test_png_text_chunks_are_stripped(media: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "internal: draft for client Smith")
    out = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(out, format="PNG", pnginfo=info)

    image = upload(out.getvalue())

    stored = stored_image(image)
    assert "Comment" not in stored.info
    assert stored.mode == "RGBA"  # transparency kept


def test_the_stored_name_is_random_and_a_path_in_the_uploaded_name_is_harmless(media: Path) -> None:
    image = upload(image_bytes(), name="../../etc/passwd.png")

    assert image.file.name.startswith(f"{services.STORAGE_FOLDER}/")
    assert "passwd" not in image.file.name
    assert ".." not in image.file.name
    assert image.original_name == "passwd.png"
    (stored,) = stored_files(media)
    assert stored.resolve().is_relative_to(media.resolve())
    assert services.safe_original_name("..\\..\\win\\evil\x00.png") == "evil.png"
    assert len(services.safe_original_name("a" * 500 + ".png")) == 150


def test_a_failed_database_write_leaves_no_file_behind(media: Path, monkeypatch: Any) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise IntegrityError("refused")

    monkeypatch.setattr(AssetImage, "save", refuse)

    with pytest.raises(IntegrityError):
        upload(image_bytes())
    assert stored_files(media) == []


def test_deleting_an_image_deletes_its_file_once_committed(
    media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    image = AssetImageFactory()
    AssetDescriptionProposalFactory(image=image)
    assert len(stored_files(media)) == 1

    with django_capture_on_commit_callbacks(execute=True):
        services.asset_image_delete(image=image)

    assert stored_files(media) == []
    assert AssetDescriptionProposal.objects.count() == 0


def test_deleting_an_asset_deletes_its_images_files_once_committed(
    media: Path, django_capture_on_commit_callbacks: Any
) -> None:
    image = AssetImageFactory()

    with django_capture_on_commit_callbacks(execute=True):
        holdings_services.asset_delete(asset=image.asset)

    assert stored_files(media) == []
    assert AssetImage.objects.count() == 0


def test_with_no_describer_an_upload_asks_for_nothing(media: Path, settings: Any, monkeypatch: Any) -> None:
    assert settings.ASSET_DESCRIBER == "none"  # the default
    monkeypatch.setattr("urllib.request.urlopen", lambda *args, **kwargs: pytest.fail("called the network"))

    image = upload(image_bytes())

    assert not image.proposals.exists()
    with pytest.raises(services.ConflictError, match="No describer"):
        services.asset_image_describe(image=image)


# --- The database's own rules ----------------------------------------------------------------------------------


def _row(**overrides: Any) -> AssetImage:
    fields: dict[str, Any] = {
        "asset": AssetFactory(),
        "kind": "logo",
        "file": "asset-images/x.png",
        "content_type": "image/png",
        "width": 1,
        "height": 1,
        "size_bytes": 1,
        "sha256": "a" * 64,
    }
    return AssetImage(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("overrides", "constraint"),
    [
        ({"content_type": "image/gif"}, "holdings_assetimage_content_type_valid"),
        ({"kind": "poster"}, "holdings_assetimage_kind_valid"),
        ({"width": 0}, "holdings_assetimage_dimensions_positive"),
        ({"size_bytes": 0}, "holdings_assetimage_dimensions_positive"),
        ({"sha256": "A" * 64}, "holdings_assetimage_sha256_hex"),
        ({"sha256": "a" * 63}, "holdings_assetimage_sha256_hex"),
    ],
)
def test_the_database_refuses_an_image_row_that_breaks_a_rule(overrides: dict[str, Any], constraint: str) -> None:
    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        _row(**overrides).save()


def test_the_database_refuses_two_images_under_one_file_name() -> None:
    _row().save()
    with pytest.raises(IntegrityError), transaction.atomic():
        _row().save()


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"status": "proposed", "text": ""}, id="proposed-without-text"),
        pytest.param({"status": "pending", "text": "half an answer"}, id="text-while-pending"),
        pytest.param({"status": "failed", "text": "partial"}, id="text-on-a-failure"),
        pytest.param({"status": "accepted", "text": "x", "decided_at": None}, id="accepted-without-when"),
        pytest.param({"status": "proposed", "text": "x", "decided_at": timezone.now()}, id="decided-while-proposed"),
        pytest.param({"status": "proposed", "text": "x", "described_at": None}, id="proposed-without-time"),
        pytest.param({"status": "thinking"}, id="unknown-status"),
    ],
)
def test_the_database_refuses_a_proposal_that_breaks_a_rule(media: Path, fields: dict[str, Any]) -> None:
    image = AssetImageFactory()
    values = {"status": "pending", "text": "", "described_at": timezone.now(), "decided_at": None, **fields}
    if values["status"] not in ("proposed", "accepted", "rejected") and "described_at" not in fields:
        values["described_at"] = None
    with pytest.raises(IntegrityError), transaction.atomic():
        AssetDescriptionProposal.objects.create(image=image, **values)


def test_the_database_holds_one_proposal_in_flight_per_image(media: Path) -> None:
    image = AssetImageFactory()
    AssetDescriptionProposal.objects.create(image=image, status="pending")
    AssetDescriptionProposalFactory(image=image)  # a proposed one beside it is fine

    with pytest.raises(IntegrityError), transaction.atomic():
        AssetDescriptionProposal.objects.create(image=image, status="running")


def _age(media: Path, name: str, hours: float) -> None:
    when = (timezone.now() - datetime.timedelta(hours=hours)).timestamp()
    os.utime(media / name, (when, when))


def test_the_sweep_deletes_old_files_no_image_names_and_keeps_the_rest(media: Path) -> None:
    kept = upload(image_bytes())
    old_orphan = default_storage.save(f"{services.STORAGE_FOLDER}/old.png", ContentFile(b"x"))
    young_orphan = default_storage.save(f"{services.STORAGE_FOLDER}/young.png", ContentFile(b"x"))
    _age(media, old_orphan, hours=2)
    _age(media, str(kept.file.name), hours=2)

    assert purge_orphan_image_files.delay().get() == 1
    assert not default_storage.exists(old_orphan)
    assert default_storage.exists(young_orphan)
    assert default_storage.exists(str(kept.file.name))
    assert services.orphan_files_delete() == 0  # a second run finds none


def test_the_sweep_finds_nothing_before_any_upload(media: Path) -> None:
    assert services.orphan_files_delete() == 0


def test_the_sweep_is_scheduled_nightly_by_default() -> None:
    task = PeriodicTask.objects.get(task="holdings.purge_orphan_image_files")
    assert (task.enabled, task.crontab.hour, task.crontab.minute) == (True, "3", "15")


def test_a_16_bit_grey_image_is_scaled_to_8_bits_not_blown_out_to_white(media: Path) -> None:
    out = io.BytesIO()
    Image.new("I;16", (16, 16), 30000).save(out, format="PNG")  # 30000 of 65535: a mid grey

    image = upload(out.getvalue())

    stored = stored_image(image)
    assert stored.mode == "L"
    mean = sum(value * count for value, count in enumerate(stored.histogram())) / (16 * 16)
    assert abs(mean - 30000 / 257) < 2  # 116, not 255


def test_an_icc_profile_in_the_image_info_is_not_stored(media: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, format="PNG", icc_profile=b"not-a-real-profile" * 4)
    with Image.open(io.BytesIO(out.getvalue())) as before:
        assert "icc_profile" in before.info

    stored = stored_image(upload(out.getvalue()))

    assert "icc_profile" not in stored.info


def test_an_upload_that_grows_past_the_byte_limit_when_encoded_again_is_refused(media: Path, settings: Any) -> None:
    out = io.BytesIO()
    Image.effect_noise((300, 300), 100).convert("RGB").save(out, format="JPEG", quality=5)
    original = out.getvalue()
    settings.ASSET_IMAGE_MAX_BYTES = len(original) + 10  # the upload itself passes

    with pytest.raises(ValidationError) as refused:
        upload(original, name="tiny.jpg")

    assert "encoded again" in refused.value.message_dict["file"][0]
    assert stored_files(media) == []
    settings.ASSET_IMAGE_MAX_BYTES = 10 * 2**20
    assert upload(original, name="tiny.jpg").size_bytes > len(original) + 10  # it did grow


@pytest.mark.parametrize("delete", ["asset", "image"])
def test_a_storage_error_after_a_deletion_commits_is_logged_not_raised(
    media: Path, django_capture_on_commit_callbacks: Any, monkeypatch: Any, caplog: Any, delete: str
) -> None:
    image = AssetImageFactory()

    def broken(name: str) -> None:
        raise OSError("the bucket is unreachable")

    monkeypatch.setattr(default_storage, "delete", broken)
    with django_capture_on_commit_callbacks(execute=True):
        if delete == "asset":
            holdings_services.asset_delete(asset=image.asset)
        else:
            services.asset_image_delete(image=image)

    assert AssetImage.objects.count() == 0
    assert "Could not delete the stored file" in caplog.text


# --- An old draft never overwrites a newer description -------------------------------------------------------


def test_a_newer_proposal_of_an_image_supersedes_the_older_undecided_one(
    media: Path, settings: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    from holdings.images.describers import Description

    class Fixed:
        name, model = "fixed", "m"

        def describe(self, **kwargs: Any) -> Description:
            return Description(text="The newer text.", provider="fixed", model="m")

    old = AssetDescriptionProposalFactory(text="The older text.")
    monkeypatch.setattr(services, "configured_describer", lambda: Fixed())
    with django_capture_on_commit_callbacks(execute=True):
        new = services.asset_image_describe(image=old.image)

    old.refresh_from_db()
    new.refresh_from_db()
    assert (new.status, old.status, old.text) == ("proposed", "superseded", "The older text.")
    with pytest.raises(services.ConflictError, match="superseded"):
        services.description_accept(proposal=old, decided_by=None)
    services.description_accept(proposal=new, decided_by=None)
    old.image.asset.refresh_from_db()
    assert old.image.asset.description == "The newer text."


def test_a_proposal_older_than_the_assets_last_accepted_one_cannot_be_accepted(media: Path) -> None:
    asset = AssetFactory()
    older = AssetDescriptionProposalFactory(image=AssetImageFactory(asset=asset), text="Old.")
    newer = AssetDescriptionProposalFactory(image=AssetImageFactory(asset=asset), text="New.")
    AssetDescriptionProposal.objects.filter(pk=older.pk).update(created_at=newer.created_at - datetime.timedelta(1))
    services.description_accept(proposal=newer, decided_by=None)

    with pytest.raises(services.ConflictError, match="newer description of this asset"):
        services.description_accept(proposal=older, decided_by=None)

    asset.refresh_from_db()
    assert asset.description == "New."
    services.description_reject(proposal=older, decided_by=None)  # it can still be rejected
