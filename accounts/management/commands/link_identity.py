from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import ExternalIdentity, User
from accounts.services.identities import SUPABASE, identity_link, identity_subject_normalize, identity_unlink
from portfolio_site.errors import ConflictError


def _user(email: str, what: str) -> User:
    user = User.objects.filter(email__iexact=User.objects.normalize_email(email)).first()
    if user is None:
        raise CommandError(f"No user with the address {email} ({what}).")
    return user


class Command(BaseCommand):
    help = (
        "Link a user to their account at an identity provider (by default Supabase: the Supabase user id, a UUID; "
        "or an OpenID Connect provider, --provider oidc:NAME: the user's `sub` there), so that they can sign in "
        "with it; or remove the link with --unlink. --by names the administrator acting: "
        "a superuser, or a user holding the permission to add (or delete) external identities. Every link and "
        "unlink is recorded as a security event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="The address of the user to link or unlink.")
        parser.add_argument(
            "subject", nargs="?", help="The provider's id of the user (for Supabase its user UUID; for OIDC its sub)."
        )
        parser.add_argument(
            "--provider",
            default=SUPABASE,
            help=f"{SUPABASE} (the default), or oidc:NAME for a provider named in OIDC_PROVIDERS.",
        )
        parser.add_argument("--by", required=True, help="The address of the administrator making the change.")
        parser.add_argument("--unlink", action="store_true", help="Remove the user's link at this provider.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = _user(options["email"], "the user")
        actor = _user(options["by"], "--by")
        provider = options["provider"]
        try:
            if options["unlink"]:
                identity = ExternalIdentity.objects.filter(provider=provider, user=user).first()
                if identity is None or (
                    options["subject"]
                    and identity.subject != identity_subject_normalize(provider=provider, subject=options["subject"])
                ):
                    raise CommandError(f"{user.email} has no such link at {provider}.")
                identity_unlink(identity=identity, by=actor)
                self.stdout.write(f"Unlinked {user.email} from {provider}:{identity.subject}.")
                return
            if not options["subject"]:
                raise CommandError("The provider's user id is required to link.")
            identity = identity_link(user=user, provider=provider, subject=options["subject"], by=actor)
        except PermissionDenied as error:
            raise CommandError(str(error)) from None
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        except ConflictError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"Linked {user.email} to {provider}:{identity.subject}.")
