"""The API onto asset images, nested under their asset (`/assets/{asset_pk}/images/`, `/assets/{asset_pk}/
description-proposals/`): thin doors onto `holdings.images.services`.

Reference data, as assets are: whoever may view assets' images sees every asset's. Uploading and deleting need the
image's add/delete permissions (Operations); asking for a description and accepting or rejecting one change the
asset's description, so they need `holdings.change_asset`, whoever may change assets.
"""

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.throttles import CounterThrottle
from holdings.models import Asset, AssetDescriptionProposal, AssetImage
from portfolio_site.api.schema import ErrorDetailSerializer
from portfolio_site.api.viewsets import ScopedViewSetMixin
from portfolio_site.scoping import scoped

from . import services
from .downloads import image_download

CHANGE_ASSET = "holdings.change_asset"
DESCRIBE_THROTTLE_SCOPE = "asset_describe"

ASSET_PK = OpenApiParameter(
    "asset_pk", OpenApiTypes.INT, OpenApiParameter.PATH, description="The id of the asset the images belong to."
)


class LimitedUploadHandler(FileUploadHandler):
    """Stops receiving a request's file once it is past `max_bytes`: the handlers after it (memory, then a
    temporary file) never get those bytes, so an upload of any size costs no more than the limit in memory or on
    disk. The rest of the body is read and dropped, so that the client still gets the answer saying why."""

    def __init__(self, request: HttpRequest, *, max_bytes: int) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.max_bytes:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler makes the file


class DescribeThrottle(CounterThrottle):
    """Per user, at `REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["asset_describe"]` (ASSET_DESCRIBE_RATE). Counted in
    the database, not in DRF's cache history: each description is a paid call to the describer, and with the cache
    down (django-redis ignores the outage, every read a miss) a cache count would let every request through."""

    def rate_name(self, view: Any) -> str | None:
        return getattr(view, "throttle_scope", None)

    def get_rate(self) -> str | None:
        # Read when a request comes rather than when DRF is imported, so a changed ASSET_DESCRIBE_RATE applies.
        rates: dict[str, str | None] = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
        return rates.get(self.scope or "")

    def ident_for(self, request: Request) -> str | None:
        user = request.user
        return f"user-{user.pk}" if user and user.is_authenticated else f"ip-{self.get_ident(request)}"


class CanChangeAssets(permissions.BasePermission):
    """Describing an image and deciding on a description change the asset: whoever may change assets may."""

    message = "Only those who may change assets may ask for, accept or reject a description."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(CHANGE_ASSET))


class AssetDescriptionProposalSerializer(serializers.ModelSerializer):
    class Meta:
        model = AssetDescriptionProposal
        fields = [
            "id",
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
            "created_at",
        ]
        read_only_fields = fields


class AssetImageSerializer(serializers.ModelSerializer):
    proposals = AssetDescriptionProposalSerializer(
        many=True, read_only=True, help_text="Its descriptions asked for, newest first."
    )

    class Meta:
        model = AssetImage
        fields = [
            "id",
            "asset",
            "kind",
            "content_type",
            "width",
            "height",
            "size_bytes",
            "sha256",
            "original_name",
            "uploaded_by",
            "created_at",
            "proposals",
        ]
        read_only_fields = fields


class AssetImageUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="A PNG, JPEG or WebP image (its content decides, not its name), within ASSET_IMAGE_MAX_BYTES and "
        "ASSET_IMAGE_MAX_PIXELS. Stored without its metadata (EXIF, GPS), upright."
    )
    kind = serializers.ChoiceField(choices=AssetImage.Kind.choices, default=AssetImage.Kind.OTHER)


class NestedUnderAssetMixin:
    """The rows of the asset named by `asset_pk`, which must be one the caller may see (else 404)."""

    kwargs: dict[str, Any]

    def asset(self) -> Asset:
        cached: Asset | None = getattr(self, "_asset", None)
        if cached is None:
            cached = get_object_or_404(
                scoped(Asset.objects.all(), self.request.user),  # type: ignore[attr-defined]
                pk=self.kwargs["asset_pk"],
            )
            self._asset = cached
        return cached


@extend_schema_view(
    list=extend_schema(parameters=[ASSET_PK], description="The asset's images, newest first, with their proposals."),
    retrieve=extend_schema(parameters=[ASSET_PK]),
    destroy=extend_schema(parameters=[ASSET_PK], description="Deletes the image, its proposals and its file."),
)
class AssetImageViewSet(
    NestedUnderAssetMixin,
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Images of an asset (factsheets, term sheets, logos): every staff role reads them, Operations upload them."""

    queryset = AssetImage.objects.prefetch_related("proposals")
    serializer_class = AssetImageSerializer
    filter_backends: list[Any] = []
    lookup_value_regex = r"[0-9]+"
    throttle_scope = DESCRIBE_THROTTLE_SCOPE  # only `describe` has a throttle that reads it

    def get_queryset(self) -> QuerySet[AssetImage]:
        return super().get_queryset().filter(asset=self.asset()).order_by("-created_at", "-id")

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        # Before anything reads the body (authentication may, for the CSRF check of a session).
        self.upload_limit = LimitedUploadHandler(request, max_bytes=settings.ASSET_IMAGE_MAX_BYTES)
        request.upload_handlers.insert(0, self.upload_limit)
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        parameters=[ASSET_PK],
        request={"multipart/form-data": AssetImageUploadSerializer},
        responses={
            201: AssetImageSerializer,
            404: OpenApiResponse(ErrorDetailSerializer, description="No such asset among those the caller may see."),
            415: OpenApiResponse(ErrorDetailSerializer, description="The body is not multipart/form-data."),
        },
        description="Uploads an image as multipart/form-data (`file`, `kind`). Refused (400 on `file`, nothing "
        "stored) when it is not a PNG, JPEG or WebP image, is truncated, is over the size or pixel limit, or is "
        "over the size limit once encoded again. With a describer configured, a description is asked for once the "
        "upload is stored (see `proposals`).",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = request.data
        if self.upload_limit.exceeded:
            raise services.too_big(settings.ASSET_IMAGE_MAX_BYTES)
        upload = AssetImageUploadSerializer(data=data)
        upload.is_valid(raise_exception=True)
        file = upload.validated_data["file"]
        image = services.asset_image_upload(
            asset=self.asset(),
            file=file,
            kind=upload.validated_data["kind"],
            uploaded_by=request.user,
            name=file.name,
        )
        return Response(self.get_serializer(image).data, status=status.HTTP_201_CREATED)

    def get_parsers(self) -> list[Any]:
        # An upload is multipart; nothing else here reads a body.
        return [parsers.MultiPartParser(), parsers.FormParser()]

    def perform_destroy(self, instance: AssetImage) -> None:
        services.asset_image_delete(image=instance)

    @extend_schema(
        parameters=[ASSET_PK],
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="The stored image."),
            (200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="The stored image."),
            (200, "image/webp"): OpenApiResponse(OpenApiTypes.BINARY, description="The stored image."),
        },
        description="The stored (metadata-free) image, with its content type; staff only, never a public URL.",
    )
    @action(detail=True, methods=["get"])
    def file(self, request: Request, asset_pk: str, pk: str) -> FileResponse:
        return image_download(self.get_object())

    @extend_schema(
        parameters=[ASSET_PK],
        request=None,
        responses={
            202: AssetDescriptionProposalSerializer,
            429: OpenApiResponse(
                ErrorDetailSerializer,
                description="Too many descriptions asked for by this user (ASSET_DESCRIBE_RATE): each one costs a call "
                "to the describer. Retry-After says when to ask again.",
            ),
        },
        description="Asks the configured describer to describe the image again (a job). 409 when no describer is "
        "configured or the image is being described already. Needs the permission to change assets. Throttled per "
        "user (ASSET_DESCRIBE_RATE, 10 a minute by default).",
    )
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[CanChangeAssets],
        throttle_classes=[DescribeThrottle],
    )
    def describe(self, request: Request, asset_pk: str, pk: str) -> Response:
        proposal = services.asset_image_describe(image=self.get_object(), requested_by=request.user)
        proposal.refresh_from_db()  # the job may have run already (in-process without a broker)
        return Response(AssetDescriptionProposalSerializer(proposal).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(parameters=[ASSET_PK], description="Descriptions asked for the asset's images, newest first."),
    retrieve=extend_schema(parameters=[ASSET_PK]),
)
class AssetDescriptionProposalViewSet(
    NestedUnderAssetMixin,
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Descriptions drafted by the describer from an asset's images; one becomes the asset's when staff accept it."""

    queryset = AssetDescriptionProposal.objects.all()
    serializer_class = AssetDescriptionProposalSerializer
    filter_backends: list[Any] = []
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[AssetDescriptionProposal]:
        return super().get_queryset().filter(image__asset=self.asset()).order_by("-created_at", "-id")

    @extend_schema(
        parameters=[ASSET_PK],
        request=None,
        responses={200: AssetDescriptionProposalSerializer},
        description="Makes the proposed text the asset's description (recorded in the asset's history). 409 unless "
        "the proposal is proposed. Needs the permission to change assets.",
    )
    @action(detail=True, methods=["post"], permission_classes=[CanChangeAssets])
    def accept(self, request: Request, asset_pk: str, pk: str) -> Response:
        proposal = services.description_accept(proposal=self.get_object(), decided_by=request.user)
        return Response(self.get_serializer(proposal).data)

    @extend_schema(
        parameters=[ASSET_PK],
        request=None,
        responses={200: AssetDescriptionProposalSerializer},
        description="Rejects the proposed text; the asset's description stays as it is. 409 unless the proposal "
        "is proposed. Needs the permission to change assets.",
    )
    @action(detail=True, methods=["post"], permission_classes=[CanChangeAssets])
    def reject(self, request: Request, asset_pk: str, pk: str) -> Response:
        proposal = services.description_reject(proposal=self.get_object(), decided_by=request.user)
        return Response(self.get_serializer(proposal).data)
