#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portfolio_site.settings.dev")
    from django.core.management import execute_from_command_line

    from portfolio_site import history

    # Whatever a command changes is recorded as changed through the command door (`runserver` included: its
    # requests bind their own door, which wins inside them).
    history.bind_for_process(history.Door.COMMAND)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
