"""Domain errors that services raise and every door (API, admin, commands) reports in its own way.

Invalid input is Django's `ValidationError` (400) and a caller acting outside its scope is Django's
`PermissionDenied` (403); what is left is a request that is well-formed but clashes with the current state.
"""


class ConflictError(Exception):
    """The request is valid but the current state refuses it (HTTP 409): not enough cash, not enough units."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
