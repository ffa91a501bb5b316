"""Writes with rules about users, their logins and their security. See the modules for each area."""

from .users import (
    CACHE_NAMESPACE,
    registration_open_to,
    user_create,
    user_register,
    user_set_password,
    user_update,
)

__all__ = [
    "CACHE_NAMESPACE",
    "registration_open_to",
    "user_create",
    "user_register",
    "user_set_password",
    "user_update",
]
