from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, permissions, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.validators import UniqueValidator

from accounts import services
from accounts.filters import UserFilterSet
from accounts.models import User
from accounts.roles import role_names
from accounts.throttles import AUTH_THROTTLES
from portfolio_site.api.fields import LowercaseEmailField
from portfolio_site.api.permissions import IsSuperuser

EMAIL_TAKEN = "A user with this email address already exists."
REGISTRATION_CLOSED = "Only an administrator may create users."


class UserSerializer(serializers.ModelSerializer):
    groups = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), many=True, required=False, help_text="Role names."
    )
    email = LowercaseEmailField(validators=[UniqueValidator(User.objects.all(), lookup="iexact", message=EMAIL_TAKEN)])
    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"})

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "full_name",
            "password",
            "is_active",
            "is_staff",
            "is_superuser",
            "is_verified",
            "groups",
            "last_login",
            "last_login_ip",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["last_login", "last_login_ip", "created_at", "updated_at"]

    def create(self, validated_data: dict[str, Any]) -> User:
        return services.user_create(**{"password": None, **validated_data})

    def update(self, instance: User, validated_data: dict[str, Any]) -> User:
        return services.user_update(user=instance, **validated_data)


class UserViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Staff accounts; administrators only. Users are deactivated (`is_active: false`), never deleted."""

    queryset = User.objects.prefetch_related("groups")
    serializer_class = UserSerializer
    permission_classes = [IsSuperuser]
    filterset_class = UserFilterSet
    ordering_fields = ["email", "full_name", "created_at", "last_login"]
    ordering = ["email"]


class RegisterSerializer(serializers.Serializer):
    email = LowercaseEmailField(validators=[UniqueValidator(User.objects.all(), lookup="iexact", message=EMAIL_TAKEN)])
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    full_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=150)


class MeSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "email", "full_name", "is_staff", "is_superuser", "is_verified", "roles", "last_login"]
        read_only_fields = fields

    def get_roles(self, user: User) -> list[str]:
        return sorted(role_names(user))


class RegisterView(generics.GenericAPIView):
    """Create a user. While no user exists anyone may create the first one, who becomes an administrator;
    after that only administrators may, and anyone else gets the same refusal whatever the address."""

    serializer_class = RegisterSerializer
    permission_classes = [permissions.AllowAny]
    throttle_classes = AUTH_THROTTLES
    throttle_scope = "login"

    @extend_schema(request=RegisterSerializer, responses={201: MeSerializer})
    def post(self, request: Request) -> Response:
        # Refused before the body is read: validating it first would tell anyone which addresses have accounts.
        if not services.registration_open_to(request.user):
            self.permission_denied(request, message=REGISTRATION_CLOSED)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = services.user_register(actor=request.user, **serializer.validated_data)
        except DjangoPermissionDenied as denied:
            # DRF answers 401 to an anonymous caller (who may yet log in as an admin), 403 to others.
            self.permission_denied(request, message=str(denied))
        return Response(MeSerializer(user).data, status=status.HTTP_201_CREATED)


class MeView(generics.RetrieveAPIView):
    """The authenticated caller, with their roles."""

    serializer_class = MeSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_object(self) -> User:
        return self.request.user  # type: ignore[return-value]
