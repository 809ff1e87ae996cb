"""Domain errors. The HTTP edge maps each to a status; the order consumer decides retry or park."""

from pydantic import ValidationError


class DomainError(Exception):
    """Base class. `code` is stable and machine readable; the message is for people."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:  # a more precise code than the class's (e.g. conflict: out_of_stock)
            self.code = code


class InvalidInput(DomainError):
    """The request or event is malformed or breaks a rule: the sender must change it (400, or parked)."""

    code = "invalid"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The request is well formed but clashes with current state (409)."""

    code = "conflict"


class InsufficientPoints(Conflict):
    code = "insufficient_points"


class CapReached(Conflict):
    """A limit per day or per key is used up (409): e.g. a support key's daily points adjustments."""

    code = "cap_reached"


class TooLarge(DomainError):
    """The request, or what it would store or queue, is over a limit of AWS's (413, or parked)."""

    code = "too_large"


class Retryable(DomainError):
    """Nothing is wrong with the request; trying again later may succeed (contention, throttling, an outage)."""

    code = "retry"


def first_problem(exc: "ValidationError") -> tuple[str, str]:
    """(where, what) of a validation error's first problem, e.g. ('event.data.total', 'String should match ...')."""
    first = exc.errors()[0]
    return ".".join(str(part) for part in first["loc"]), first["msg"]
