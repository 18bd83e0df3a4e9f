"""One error family. Every failure a user can cause or meet is an `OysterError` with a
message that says what went wrong and where; the CLI prints it without a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class OysterError(Exception):
    """Base of every error Oyster raises on purpose."""


class PolicyError(OysterError):
    """A policy file is missing, unreadable or invalid (names the file and the field).

    `problems` holds the same facts as (file, field, reason) rows, for a page to show;
    the field is "" when the whole file is at fault."""

    def __init__(self, message: str, problems: list[tuple[str, str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class InputError(OysterError):
    """Input that cannot be processed: malformed JSON, empty or oversized messages, bad roles."""


class BudgetExceeded(InputError):
    """A request needs more work than the policy's `limits` allow (too many messages, too
    much text, too many characters to embed, too long to assess). `limit` names the field."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class BackendError(OysterError):
    """A chat backend failed: unreachable, timed out, returned an error or garbage."""


class BackendTimeout(BackendError):
    """The backend did not answer within its timeout."""


class JudgeError(OysterError):
    """A judge could not produce a verdict it is allowed to produce."""


class AssessorError(OysterError):
    """An assessor could not be built or run (missing model artefacts, bad spec)."""


def field_problem(e: ValidationError, whole: str = "<root>") -> str:
    """The first problem pydantic found, as `field 'a.b': message` (`whole` names the field
    when the problem is with the whole value)."""
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or whole
    return f"field '{field}': {err['msg']}"
