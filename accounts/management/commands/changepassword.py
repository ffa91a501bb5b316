"""Django's changepassword, plus what a password change means here: every session of the user ends."""

import getpass
from typing import Any

from django.contrib.auth.management.commands import changepassword

from accounts.models import LoginSession, User
from accounts.services.events import ClientInfo, Kind, security_event_record
from accounts.services.sessions import sessions_revoke_all


class Command(changepassword.Command):
    help = changepassword.Command.help + " Ends every login session of the user and records the change."

    def handle(self, *args: Any, **options: Any) -> str | None:
        result = super().handle(*args, **options)
        user = User.objects.get_by_natural_key(options["username"] or getpass.getuser())
        client = ClientInfo(user_agent="manage.py changepassword")
        security_event_record(kind=Kind.PASSWORD_CHANGED, client=client, user=user, detail="manage.py changepassword")
        ended = sessions_revoke_all(user=user, client=client, reason=LoginSession.EndReason.PASSWORD_CHANGED)
        self.stdout.write(f"Ended {ended} open session(s).")
        return result
