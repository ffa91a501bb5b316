"""Two-factor authentication with an authenticator app (TOTP), its recovery codes, and the login's second step.

The TOTP secret is encrypted at rest (portfolio_site.crypto); recovery codes are stored only as keyed hashes and
shown once. A code is accepted within one time step either side of now, and a time step is accepted once
only: `TOTPDevice.last_used_step` remembers the last one, so a code seen over someone's shoulder is spent.
A wrong second factor is audited and counts toward the lockout of the user's address, like a wrong password.
"""

import logging
import secrets
import time
from dataclasses import dataclass

import pyotp
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.models import LoginSession, RecoveryCode, TOTPDevice, User
from portfolio_site import logs
from portfolio_site.crypto import InvalidToken, decrypt, encrypt
from portfolio_site.errors import ConflictError

from .events import ClientInfo, Kind, security_event_record
from .login import (
    LoginFailed,
    LoginResult,
    lockout_check,
    lockout_record_failure,
    login_complete,
    two_factor_challenge_spend,
    two_factor_challenge_user,
    two_factor_enabled,
)

logger = logging.getLogger(__name__)

ISSUER = "Portfolio back-office"
RECOVERY_CODE_SALT = "accounts.recovery-code"
RECOVERY_CODE_COUNT = 10
# Time steps accepted either side of the current one, for clocks that drift a little.
VALID_WINDOW = 1

INVALID_SECOND_FACTOR = "The two-factor code is not valid."
CONFIRM_REFUSED = "The code is not valid: enter the code the authenticator app shows now."
DISABLE_REFUSED = "The code is neither a current authenticator code nor an unused recovery code."


@dataclass(frozen=True)
class Enrolment:
    """What an authenticator app needs: the secret, also as an otpauth:// URI (for a QR code)."""

    secret: str
    provisioning_uri: str


@dataclass(frozen=True)
class TwoFactorStatus:
    enabled: bool
    recovery_codes_left: int


# --- Codes ---------------------------------------------------------------------------------------


def _totp_step(device: TOTPDevice, code: str) -> int | None:
    """The time step `code` belongs to, if it is current (within the window) and its step was never used."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    try:
        secret = decrypt(device.encrypted_secret)
    except InvalidToken:
        # A key was dropped before `rotate_encryption_keys` ran: no code can match, recovery codes still work.
        logger.error("The TOTP secret of user %s cannot be decrypted with ENCRYPTION_KEYS", device.user_id)
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(time.time()) // totp.interval
    for step in range(now_step - VALID_WINDOW, now_step + VALID_WINDOW + 1):
        if step > device.last_used_step and constant_time_compare(totp.generate_otp(step), code):
            return step
    return None


def _normalize_recovery_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def recovery_code_hash(*, user_pk: int, code: str) -> str:
    """A keyed hash of a recovery code, bound to its user; dashes, spaces and case do not matter."""
    normalized = _normalize_recovery_code(code)
    return salted_hmac(RECOVERY_CODE_SALT, f"{user_pk}:{normalized}", algorithm="sha256").hexdigest()


def _new_recovery_code() -> str:
    raw = secrets.token_hex(6)  # 48 random bits
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def _recovery_codes_replace(user: User) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes: set[str] = set()
    while len(codes) < RECOVERY_CODE_COUNT:
        codes.add(_new_recovery_code())
    ordered = sorted(codes)
    RecoveryCode.objects.bulk_create(
        RecoveryCode(user=user, code_hash=recovery_code_hash(user_pk=user.pk, code=code)) for code in ordered
    )
    return ordered


def _second_factor_spend(
    *, user: User, device: TOTPDevice, client: ClientInfo, code: str | None, recovery_code: str | None
) -> str | None:
    """Spends a TOTP code (its time step) or an unused recovery code; how the user passed, or None.

    The caller holds the device's row lock, so two requests cannot spend the same step or recovery code.
    """
    if code:
        step = _totp_step(device, code)
        if step is not None:
            device.last_used_step = step
            device.save(update_fields=["last_used_step"])
            return "totp"
    if recovery_code:
        row = (
            RecoveryCode.objects.select_for_update()
            .filter(user=user, used_at__isnull=True, code_hash=recovery_code_hash(user_pk=user.pk, code=recovery_code))
            .first()
        )
        if row is not None:
            row.used_at = timezone.now()
            row.save(update_fields=["used_at"])
            left = RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
            security_event_record(
                kind=Kind.RECOVERY_CODE_USED, client=client, user=user, detail=f"{left} recovery code(s) left"
            )
            return "recovery code"
    return None


# --- Enrolling, confirming, disabling ------------------------------------------------------------


@transaction.atomic
def totp_enrol(*, user: User) -> Enrolment:
    """A new secret for the user's authenticator, awaiting a first code; replaces an unconfirmed one.

    ConflictError if two-factor authentication is already on (disable it first).
    """
    device = TOTPDevice.objects.select_for_update().filter(user=user).first()
    if device is not None and device.confirmed_at is not None:
        raise ConflictError("Two-factor authentication is already on; disable it before enrolling again.")
    secret = logs.secret(pyotp.random_base32())  # no log line of this request may show it
    device = device or TOTPDevice(user=user)
    device.encrypted_secret = encrypt(secret)
    device.last_used_step = 0
    device.created_at = timezone.now()
    device.full_clean()
    device.save()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)
    return Enrolment(secret=secret, provisioning_uri=uri)


@transaction.atomic
def totp_confirm(*, user: User, code: str, client: ClientInfo) -> list[str]:
    """Turns two-factor on with a first code from the app; returns the recovery codes, the only time they exist.

    ConflictError if no enrolment awaits confirmation; ValidationError (on `code`) if the code is wrong.
    """
    device = TOTPDevice.objects.select_for_update().filter(user=user).first()
    if device is None or device.confirmed_at is not None:
        raise ConflictError("No authenticator is awaiting confirmation: enrol one first.")
    step = _totp_step(device, code)
    if step is None:
        raise ValidationError({"code": [CONFIRM_REFUSED]})
    device.confirmed_at = timezone.now()
    device.last_used_step = step
    device.save(update_fields=["confirmed_at", "last_used_step"])
    codes = _recovery_codes_replace(user)
    security_event_record(kind=Kind.TWO_FACTOR_ENABLED, client=client, user=user)
    return codes


def totp_disable(*, user: User, code: str, client: ClientInfo) -> None:
    """Turns two-factor off, proven with a current TOTP code or an unused recovery code.

    ConflictError if it is not on; LockedOut after repeated failures; ValidationError (on `code`) for a wrong
    code, which is audited and counted toward the lockout (committed before the refusal is raised).
    """
    lockout_check(email=user.email)
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=False).first()
        if device is None:
            raise ConflictError("Two-factor authentication is not on.")
        how = _second_factor_spend(user=user, device=device, client=client, code=code, recovery_code=code)
        if how is not None:
            RecoveryCode.objects.filter(user=user).delete()
            device.delete()
            security_event_record(kind=Kind.TWO_FACTOR_DISABLED, client=client, user=user, detail=f"proven by {how}")
            return
    security_event_record(kind=Kind.TWO_FACTOR_FAILED, client=client, user=user, detail="disabling two-factor")
    lockout_record_failure(email=user.email, client=client, user=user)
    raise ValidationError({"code": [DISABLE_REFUSED]})


def two_factor_status(*, user: User) -> TwoFactorStatus:
    enabled = two_factor_enabled(user)
    left = RecoveryCode.objects.filter(user=user, used_at__isnull=True).count() if enabled else 0
    return TwoFactorStatus(enabled=enabled, recovery_codes_left=left)


# --- The login's second step ----------------------------------------------------------------------


def two_factor_verify(
    *,
    challenge: str,
    client: ClientInfo,
    code: str | None = None,
    recovery_code: str | None = None,
    channel: str = LoginSession.Channel.API,
) -> LoginResult:
    """Answers a login's two-factor challenge with a TOTP code or a recovery code: a new session (with its
    first tokens for an API login).

    LoginFailed for a forged, expired or spent challenge or a wrong code (audited and counted toward the
    lockout of the user's address, committed before the refusal is raised); LockedOut after repeated failures.
    """
    issued = two_factor_challenge_user(challenge=challenge)
    user, nonce = issued.user, issued.nonce
    lockout_check(email=user.email)
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=False).first()
        if device is None:  # two-factor was turned off since the password step: start again
            raise LoginFailed("The login challenge is invalid or has expired; log in again.")
        # Asked again under the device's lock: a concurrent answer to the same challenge may have spent it.
        two_factor_challenge_user(challenge=challenge)
        how = _second_factor_spend(user=user, device=device, client=client, code=code, recovery_code=recovery_code)
        if how is not None:
            two_factor_challenge_spend(nonce=nonce)
            # Both factors: "password + two-factor (totp)", "oidc:corp + two-factor (recovery code)".
            method = f"two-factor ({how})"
            if issued.first_factor:
                method = f"{issued.first_factor} + {method}"
            return login_complete(user=user, client=client, method=method, channel=channel)
    security_event_record(kind=Kind.TWO_FACTOR_FAILED, client=client, user=user, detail="login")
    lockout_record_failure(email=user.email, client=client, user=user)
    raise LoginFailed(INVALID_SECOND_FACTOR)
