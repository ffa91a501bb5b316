"""Local development (`make run`): DEBUG on, console email."""

from .base import *  # noqa: F403

DEBUG = env.bool("DEBUG", default=True)  # noqa: F405
# Static files are served from the apps' folders (no collectstatic) outside production.
STATIC_ROOT = None
