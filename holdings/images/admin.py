"""Asset images in the admin: an inline on the asset's page to upload them (through the same service as the API),
their own list (thumbnails, describing again), and the proposed descriptions with the actions that accept or reject
them. Files are shown through `AssetImageAdmin.file_view`, which checks the view permission: MEDIA_URL is never
served."""

from collections import Counter
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from holdings.models import Asset, AssetDescriptionProposal, AssetImage
from portfolio_site.admin_utils import ReadOnlyAdminMixin, ServiceAdminMixin, ServiceInlineMixin
from portfolio_site.errors import ConflictError

from . import services
from .api import LimitedUploadHandler
from .downloads import image_download

CHANGE_ASSET = "holdings.change_asset"
THUMBNAIL_HEIGHT = 60
# The most images one click of the "describe" action may ask descriptions for (each is a call to the describer).
DESCRIBE_MAX_PER_CLICK = 50
IMAGE_FIELDS = (
    "thumbnail_shown",
    "asset",
    "kind",
    "original_name",
    "content_type",
    "width",
    "height",
    "size_bytes",
    "sha256",
    "uploaded_by",
    "created_at",
)

PROPOSAL_FIELDS = (
    "image",
    "status",
    "text",
    "provider",
    "model",
    "described_at",
    "error",
    "requested_by",
    "decided_by",
    "decided_at",
)


def thumbnail(image: AssetImage) -> SafeString | str:
    if image.pk is None:
        return ""
    url = reverse("admin:holdings_assetimage_file", args=[image.pk])
    return format_html(
        '<a href="{}"><img src="{}" alt="{}" height="{}" loading="lazy"></a>',
        url,
        url,
        image.get_kind_display(),
        THUMBNAIL_HEIGHT,
    )


class AssetImageInlineForm(forms.ModelForm):
    """A new row takes an upload, checked here by the service's own rules (so its refusal shows on the row);
    an existing row only changes its kind (a stored image is never replaced)."""

    upload = forms.FileField(
        required=False,
        label="Image",
        help_text="PNG, JPEG or WebP; stored without its metadata (EXIF, GPS).",
    )

    class Meta:
        model = AssetImage
        fields = ["kind"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inspected: services.CleanImage | None = None
        if self.instance.pk is not None:
            self.fields["upload"].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        upload = cleaned.get("upload")
        if self.instance.pk is None:
            if upload is None:
                raise ValidationError({"upload": "Choose an image to upload."})
            try:
                self.inspected = services.inspect_upload(upload, name=upload.name)
            except ValidationError as error:
                raise ValidationError({"upload": error.message_dict.get("file", error.messages)}) from None
        return cleaned


class AssetImageInline(ServiceInlineMixin, admin.TabularInline):
    """The asset's images on its page: upload one (through `services.asset_image_store`), change its kind, delete
    it; each shows its latest proposed description (accepted or rejected in Asset description proposals)."""

    model = AssetImage
    form = AssetImageInlineForm
    fields = ["thumbnail_shown", "upload", "kind", "original_name", "latest_description"]
    readonly_fields = ["thumbnail_shown", "original_name", "latest_description"]
    extra = 0
    verbose_name = "image"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AssetImage]:
        # One query for every row's proposals, however many images the asset has.
        return super().get_queryset(request).prefetch_related("proposals")

    @admin.display(description="Image")
    def thumbnail_shown(self, image: AssetImage) -> SafeString | str:
        return thumbnail(image)

    @admin.display(description="Latest description")
    def latest_description(self, image: AssetImage) -> SafeString | str:
        if image.pk is None:
            return ""
        proposals = list(image.proposals.all())  # prefetched, newest first (the model's ordering)
        if not proposals:
            return "—"
        latest = proposals[0]
        link = reverse("admin:holdings_assetdescriptionproposal_changelist") + f"?image__id__exact={image.pk}"
        return format_html(
            '<a href="{}">{}</a>{}{}',
            link,
            latest.get_status_display(),
            ": " if latest.text or latest.error else "",
            (latest.text or latest.error)[:200],
        )

    def save_row(self, request: HttpRequest, obj: AssetImage, form: Any, change: bool) -> None:
        if change:
            services.asset_image_update(image=obj, kind=obj.kind)
        else:
            services.asset_image_store(asset=obj.asset, clean=form.inspected, kind=obj.kind, uploaded_by=request.user)

    def delete_row(self, request: HttpRequest, obj: AssetImage) -> None:
        services.asset_image_delete(image=obj)


@admin.register(AssetImage)
class AssetImageAdmin(ServiceAdminMixin, admin.ModelAdmin):
    """Every asset's images. Uploaded on their asset's page (the inline), so there is no add page here."""

    list_display = ["thumbnail_shown", "asset", "kind", "original_name", "size", "description_status", "created_at"]
    list_filter = ["kind", "content_type"]
    search_fields = ["asset__ticker", "asset__name", "original_name", "=sha256"]
    list_select_related = ["asset"]
    fields = IMAGE_FIELDS
    readonly_fields = [name for name in IMAGE_FIELDS if name != "kind"]
    actions = ["describe_selected"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AssetImage]:
        # The latest proposal's status as a column of the same query: the list stays one query however long.
        latest = AssetDescriptionProposal.objects.filter(image=OuterRef("pk")).order_by("-created_at", "-id")
        queryset: QuerySet[AssetImage] = AssetImage.objects.visible_to(request.user)
        return queryset.select_related("asset", "uploaded_by").annotate(
            latest_status=Subquery(latest.values("status")[:1])
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_describe_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(CHANGE_ASSET))

    @admin.display(description="Image")
    def thumbnail_shown(self, image: AssetImage) -> SafeString | str:
        return thumbnail(image)

    @admin.display(description="Size")
    def size(self, image: AssetImage) -> str:
        return f"{image.width} x {image.height} px, {image.size_bytes // 1024 or 1} KiB"

    @admin.display(description="Description")
    def description_status(self, image: AssetImage) -> str:
        status = getattr(image, "latest_status", None)
        return AssetDescriptionProposal.Status(status).label if status else "—"

    def save_model(self, request: HttpRequest, obj: AssetImage, form: Any, change: bool) -> None:
        services.asset_image_update(image=obj, kind=obj.kind)

    def delete_model(self, request: HttpRequest, obj: AssetImage) -> None:
        services.asset_image_delete(image=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AssetImage]) -> None:
        for image in queryset.order_by("pk"):
            services.asset_image_delete(image=image)

    @admin.action(description="Describe the selected images again", permissions=["describe"])
    def describe_selected(self, request: HttpRequest, queryset: QuerySet[AssetImage]) -> None:
        if queryset.count() > DESCRIBE_MAX_PER_CLICK:
            # Each image is a call to the describer, which may be billed: a select-all must not ask for hundreds.
            self.message_user(
                request,
                f"Select at most {DESCRIBE_MAX_PER_CLICK} images to describe at once; nothing was asked for.",
                messages.ERROR,
            )
            return
        asked, refused = 0, []
        for image in queryset.order_by("pk"):
            try:
                services.asset_image_describe(image=image, requested_by=request.user)
                asked += 1
            except ConflictError as error:
                refused.append(f"{image}: {error.message}")
        if asked:
            self.message_user(request, f"Asked for a description of {asked} image(s).", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.file_view)
        return [path("<int:pk>/file/", view, name="holdings_assetimage_file"), *super().get_urls()]

    def file_view(self, request: HttpRequest, pk: int) -> FileResponse:
        """The stored image, for thumbnails and the link on each: to those who may view images only."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return image_download(get_object_or_404(AssetImage.objects.visible_to(request.user), pk=pk))


@admin.register(AssetDescriptionProposal)
class AssetDescriptionProposalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The descriptions drafted from images: written by the describer's job, decided by the actions (whoever may
    change assets), never edited here."""

    list_display = ["created_at", "asset", "image", "status", "excerpt", "provider", "model", "decided_by"]
    list_filter = ["status", "provider"]
    search_fields = ["image__asset__ticker", "image__asset__name", "text"]
    list_select_related = ["image__asset", "decided_by"]
    fields = PROPOSAL_FIELDS
    readonly_fields = PROPOSAL_FIELDS
    actions = ["accept_selected", "reject_selected"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AssetDescriptionProposal]:
        queryset: QuerySet[AssetDescriptionProposal] = AssetDescriptionProposal.objects.visible_to(request.user)
        return queryset.select_related("image__asset", "decided_by")

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(CHANGE_ASSET))

    @admin.display(description="Asset", ordering="image__asset__ticker")
    def asset(self, proposal: AssetDescriptionProposal) -> Any:
        return proposal.image.asset

    @admin.display(description="Text")
    def excerpt(self, proposal: AssetDescriptionProposal) -> str:
        text = proposal.text or proposal.error
        return text if len(text) <= 120 else text[:119] + "…"

    @admin.action(description="Accept the selected descriptions (each becomes its asset's)", permissions=["decide"])
    def accept_selected(self, request: HttpRequest, queryset: QuerySet[AssetDescriptionProposal]) -> None:
        self._decide(request, queryset, services.description_accept, "Accepted")

    @admin.action(description="Reject the selected descriptions", permissions=["decide"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[AssetDescriptionProposal]) -> None:
        self._decide(request, queryset, services.description_reject, "Rejected")

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[AssetDescriptionProposal], decide: Any, done: str
    ) -> None:
        if decide is services.description_accept:
            per_asset = Counter(queryset.values_list("image__asset_id", flat=True))
            twice = {asset for asset, count in per_asset.items() if count > 1}
            if twice:
                # Which one would win is the order of the loop, not a decision: accept none, say why.
                tickers = ", ".join(sorted(str(asset) for asset in Asset.objects.filter(pk__in=twice)))
                self.message_user(request, services.ONE_PER_ASSET.format(asset=tickers), messages.ERROR)
                return
        count, refused = 0, []
        for proposal in queryset.order_by("pk"):
            try:
                decide(proposal=proposal, decided_by=request.user)
                count += 1
            except ConflictError as error:
                refused.append(f"{proposal}: {error.message}")
        if count:
            self.message_user(request, f"{done} {count} description(s).", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)


class LimitedUploadsAdminMixin:
    """Installs the API's limiting upload handler (`LimitedUploadHandler`) on the add and change views of the page
    images are uploaded on, before anything reads the body: an upload past ASSET_IMAGE_MAX_BYTES is not received
    past it (not spooled whole to a temporary file first), and the page says why, saving nothing.

    CSRF as Django documents for "modifying upload handlers on the fly": the views are csrf_exempt, so neither the
    middleware nor `admin_view` reads the body before the handler is in place, and the check runs inside
    (ModelAdmin.changeform_view is csrf_protect'ed; the refusal is too)."""

    def _limited(self, request: HttpRequest, view: Any, *args: Any) -> HttpResponse:
        limit = LimitedUploadHandler(request, max_bytes=settings.ASSET_IMAGE_MAX_BYTES)
        request.upload_handlers.insert(0, limit)
        if request.method == "POST":
            request.POST  # noqa: B018 -- read now, through the limit
            if limit.exceeded:
                return csrf_protect(self._refuse_upload)(request)
        response: HttpResponse = view(request, *args)
        return response

    def _refuse_upload(self, request: HttpRequest) -> HttpResponse:
        message = services.too_big(settings.ASSET_IMAGE_MAX_BYTES).message_dict["file"][0]
        self.message_user(request, f"{message} Nothing was saved.", messages.ERROR)  # type: ignore[attr-defined]
        return HttpResponseRedirect(request.get_full_path())

    @method_decorator(csrf_exempt)
    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return self._limited(request, super().add_view, form_url, extra_context)  # type: ignore[misc]

    @method_decorator(csrf_exempt)
    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return self._limited(request, super().change_view, object_id, form_url, extra_context)  # type: ignore[misc]
