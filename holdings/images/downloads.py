"""An asset image as a file download, the same at the API and in the admin."""

from django.core.files.storage import default_storage
from django.http import FileResponse

from holdings.models import AssetImage


def image_download(image: AssetImage) -> FileResponse:
    """The stored (metadata-free) image as both doors serve it to staff: streamed inline under our own name (never
    the uploader's), with its checked content type, not to be sniffed as anything else nor kept by a shared cache."""
    response = FileResponse(
        default_storage.open(str(image.file.name), "rb"),
        content_type=image.content_type,
        as_attachment=False,
        filename=f"asset-{image.asset_id}-image-{image.pk}.{str(image.file.name).rsplit('.', 1)[-1]}",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
