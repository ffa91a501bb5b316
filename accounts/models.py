import datetime
import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from portfolio_site.crypto import EncryptedTextField
from portfolio_site.historical import TrackedHistory
from portfolio_site.models import TimeStampedModel


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        # The whole address, not only the domain: staff type their email in any case and expect to log in.
        return (email or "").strip().lower()

    def get_by_natural_key(self, username: str | None) -> "User":
        return self.get(email__iexact=self.normalize_email(username))

    def _create(self, email: str, password: str | None, **fields: Any) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> "User":
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> "User":
        fields.update(is_staff=True, is_superuser=True, is_verified=True)
        return self._create(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin, TimeStampedModel):
    """A member of staff. The email address is the login."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log in to the admin site.")
    is_verified = models.BooleanField(default=False, help_text="Has confirmed the email address.")
    last_login_ip = models.GenericIPAddressField(null=True, blank=True)

    objects: ClassVar[UserManager] = UserManager()
    # Change history of staff accounts: never a credential (the password hash), nor the bookkeeping of logins
    # (a login saves only these fields, and leaves no historical row: see TrackedHistory). The groups are the
    # roles (accounts.roles): who was given or lost one is what an auditor looks for first.
    history = TrackedHistory(
        excluded_fields=["password", "last_login", "last_login_ip", "updated_at"], m2m_fields=["groups"]
    )

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = ["full_name"]

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="A user with this email address already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.full_name or self.email

    def clean(self) -> None:
        super().clean()
        self.email = type(self).objects.normalize_email(self.email)

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email


class LoginSession(models.Model):
    """One login on one device, through the API or the admin site.

    An API session's id travels in every token issued for it, an admin session's id in the Django session,
    so revoking it ends them all.
    """

    class Channel(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Admin site"

    class EndReason(models.TextChoices):
        LOGOUT = "logout", "Logged out"
        REVOKED = "revoked", "Revoked"
        TOKEN_REUSE = "token_reuse", "Refresh token reused (suspected theft)"
        IDLE = "idle", "Inactive for too long"
        EXPIRED = "expired", "Reached its maximum lifetime"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        USER_DEACTIVATED = "user_deactivated", "User deactivated"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="login_sessions")
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.API)
    user_agent = models.CharField(max_length=512, blank=True)
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="Absolute end of the session, whatever its activity.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    refresh_jti = models.CharField(
        max_length=64,
        blank=True,
        help_text="The id of the one refresh token that may still be used (it rotates on every use); "
        "empty for admin sessions, which have no tokens.",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="accounts_session_user_active")]
        permissions = [("revoke_loginsession", "Can revoke any user's login sessions")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(revoked_at__isnull=True, end_reason="")
                | models.Q(revoked_at__isnull=False) & ~models.Q(end_reason=""),
                name="accounts_session_revoked_with_reason",
                violation_error_message="An ended session records why it ended, and only an ended one does.",
            ),
            models.CheckConstraint(
                condition=models.Q(channel__in=["api", "admin"]),
                name="accounts_session_channel_valid",
                violation_error_message="Unknown login session channel.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.user_agent[:40] or 'unknown device'} from {self.ip or 'unknown IP'}"

    @property
    def is_active(self) -> bool:
        """Not ended, and within its limits (a session nobody uses is ended only when next presented)."""
        now = timezone.now()
        return (
            self.revoked_at is None
            and now < self.expires_at
            and now - self.last_seen_at < datetime.timedelta(minutes=settings.SESSION_IDLE_MINUTES)
        )


class ExternalIdentity(models.Model):
    """A user's account at an identity provider (Supabase, or an OpenID Connect provider), linked by an
    administrator (or, for OpenID Connect, at a sign-in by a verified email or a created user: `linked_by` empty):
    a sign-in through that provider reaches this user only through such a link.

    `provider` is "supabase" or "oidc:<name>" (a name in OIDC_PROVIDERS); `subject` is the provider's stable id of the
    user (the token's `sub` claim; for Supabase a UUID). One provider account per user, one user per provider
    account.
    """

    provider = models.CharField(max_length=64, help_text='The configured provider\'s name, e.g. "supabase".')
    subject = models.CharField(max_length=255, help_text="The provider's id of the user (the token's `sub`).")
    # A `sub` is unique only at its issuer: an OpenID Connect link is kept with the issuer it was made for, and a
    # sign-in through a provider re-pointed at another issuer (another tenant) does not follow it.
    issuer = models.CharField(
        max_length=512, blank=True, help_text="The OpenID Connect issuer the subject belongs to (empty for Supabase)."
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities")
    linked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The administrator who made the link.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["provider", "subject"]
        verbose_name = "external identity"
        verbose_name_plural = "external identities"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "subject"],
                name="accounts_identity_provider_subject_unique",
                violation_error_message="This provider account is already linked to a user.",
            ),
            models.UniqueConstraint(
                fields=["provider", "user"],
                name="accounts_identity_provider_user_unique",
                violation_error_message="This user is already linked to an account at this provider.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.subject} → {self.user}"


class IdentityLinkBlock(models.Model):
    """An administrator unlinked `user` from their account at `provider`: a sign-in through that provider must not
    link the user again by email (accounts.services.oidc), or the unlink would be undone at the next sign-in. Only
    an administrator's explicit link (accounts.services.identities.identity_link) removes the block."""

    provider = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "identity link block"
        constraints = [
            models.UniqueConstraint(fields=["provider", "user"], name="accounts_identity_block_provider_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.provider} ↛ {self.user}"


class OIDCAuthorization(models.Model):
    """One OpenID Connect sign-in under way: what the callback (admin) or `token/` (API) needs to finish it.

    Kept in the database, not the cache, so that a sign-in survives a cache outage. Only the SHA-256 of the
    `state` is stored, and the row is deleted when used, so a state finishes one sign-in at most; rows left
    behind by abandoned sign-ins are purged by accounts.services.cleanup.
    """

    state_hash = models.CharField(max_length=64, unique=True)
    provider = models.CharField(max_length=64, help_text="The configured provider's name (OIDC_PROVIDERS).")
    channel = models.CharField(max_length=16, help_text="The door that started it (api or admin): only it may end it.")
    nonce = models.CharField(max_length=128)
    # PKCE: the admin door keeps the verifier (the sign-in is bound to the browser's session); for the API the
    # client keeps it and we keep its S256 challenge, so that a stolen code and state are useless without it.
    code_verifier = models.CharField(max_length=128, blank=True)
    code_challenge = models.CharField(max_length=43, blank=True)
    redirect_uri = models.CharField(max_length=2048)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "OpenID Connect authorization"

    def __str__(self) -> str:
        return f"{self.provider} ({self.channel}) until {self.expires_at:%Y-%m-%d %H:%M}"


class SecurityEventKind(models.TextChoices):
    LOGIN_SUCCEEDED = "login_succeeded", "Login succeeded"
    LOGIN_FAILED = "login_failed", "Login failed"
    LOGOUT = "logout", "Logged out"
    SESSION_REVOKED = "session_revoked", "Session revoked"
    TOKEN_REUSE = "token_reuse", "Refresh token reuse detected"
    PASSWORD_CHANGED = "password_changed", "Password changed"
    PASSWORD_RESET_REQUESTED = "password_reset_requested", "Password reset requested"
    PASSWORD_RESET = "password_reset", "Password reset"
    EMAIL_VERIFIED = "email_verified", "Email verified"
    OTP_REQUESTED = "otp_requested", "Login code requested"
    OTP_USED = "otp_used", "Login code used"
    OTP_FAILED = "otp_failed", "Login code refused"
    TWO_FACTOR_ENABLED = "two_factor_enabled", "Two-factor authentication enabled"
    TWO_FACTOR_DISABLED = "two_factor_disabled", "Two-factor authentication disabled"
    TWO_FACTOR_FAILED = "two_factor_failed", "Two-factor code refused"
    RECOVERY_CODE_USED = "recovery_code_used", "Recovery code used"
    LOCKOUT = "lockout", "Account locked after repeated failures"
    NEW_IP_LOGIN = "new_ip_login", "Login from a new IP address"
    IDENTITY_LINKED = "identity_linked", "External identity linked"
    IDENTITY_UNLINKED = "identity_unlinked", "External identity unlinked"
    ROLES_SYNCED = "roles_synced", "Roles changed by an identity provider"


class SecurityEvent(models.Model):
    """An append-only audit record of something security-relevant. Never holds a password, token or code."""

    Kind = SecurityEventKind

    kind = models.CharField(max_length=32, choices=Kind.choices, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="security_events"
    )
    email = models.CharField(
        max_length=254, blank=True, help_text="The address a caller gave, when no user matched it (failed logins)."
    )
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    session = models.ForeignKey(LoginSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    detail = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "kind", "ip"], name="accounts_event_user_kind_ip")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=SecurityEventKind.values),
                name="accounts_event_kind_valid",
                violation_error_message="Unknown security event kind.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.user or self.email or 'unknown'} at {self.created_at:%Y-%m-%d %H:%M}"


class SecurityCounter(models.Model):
    """A count of events in a time window: failed logins and lockouts per address, requests per IP or address
    for the throttles, spent two-factor challenges.

    Kept in the database, not the cache: the cache forgives its outages (every read a miss), and a lockout
    or a throttle that forgot its count during a Redis outage would silently let an attacker through.
    """

    key = models.CharField(max_length=160, primary_key=True)
    count = models.PositiveIntegerField(default=0)
    window_ends_at = models.DateTimeField(db_index=True, help_text="The count starts again after this moment.")

    def __str__(self) -> str:
        return f"{self.key}: {self.count} until {self.window_ends_at:%Y-%m-%d %H:%M:%S}"


class EmailLoginCode(models.Model):
    """A one-time 6-digit login code sent by email; stored only as a keyed hash."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    code_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("created_at")),
                name="accounts_login_code_expires_after_creation",
                violation_error_message="A login code must expire after it is created.",
            ),
        ]

    def __str__(self) -> str:
        return f"Login code for {self.user} (expires {self.expires_at:%H:%M})"


class TOTPDevice(models.Model):
    """A user's authenticator app. The secret is encrypted at rest (settings.ENCRYPTION_KEYS)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_device")
    encrypted_secret = EncryptedTextField()
    confirmed_at = models.DateTimeField(null=True, blank=True, help_text="Set once a first code was confirmed.")
    last_used_step = models.BigIntegerField(
        default=0, help_text="Time step of the last accepted code: a code is accepted once only."
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Authenticator of {self.user} ({'on' if self.confirmed_at else 'awaiting confirmation'})"


class RecoveryCode(models.Model):
    """A one-time code that stands in for the authenticator; shown once, stored only as a keyed hash."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes")
    code_hash = models.CharField(max_length=128)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "code_hash"],
                name="accounts_recovery_code_unique",
                violation_error_message="Recovery codes of one user are distinct.",
            ),
        ]

    def __str__(self) -> str:
        return f"Recovery code of {self.user} ({'used' if self.used_at else 'unused'})"
