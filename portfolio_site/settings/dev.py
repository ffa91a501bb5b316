"""Local development (`make run`): DEBUG on, console email, static files straight from the apps."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
# No collectstatic in development: WhiteNoise serves from the apps' static folders (its finders follow DEBUG).
STATIC_ROOT = None
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
