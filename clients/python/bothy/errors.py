"""Errors of bothy's API: one class per error code, all BothyError."""

from __future__ import annotations

from typing import Dict, Optional, Type


class BothyError(Exception):
    """An error answer of bothy: code, message, the HTTP status and the
    request's ID (give it when reporting a problem)."""

    code = ""

    def __init__(self, message: str, *, code: str = "", status: int = 0,
                 request_id: str = "", retry_after: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        s = f"{self.code}: {self.message}"
        return f"{s} (request {self.request_id})" if self.request_id else s


class InvalidArgument(BothyError):
    code = "invalid_argument"


class Unauthenticated(BothyError):
    code = "unauthenticated"


class Forbidden(BothyError):
    code = "forbidden"


class NotFound(BothyError):
    code = "not_found"


class MethodNotAllowed(BothyError):
    code = "method_not_allowed"


class Conflict(BothyError):
    code = "conflict"


class RateLimited(BothyError):
    """429: slow down; retry_after says for how many seconds."""
    code = "rate_limited"


class QuotaExceeded(BothyError):
    """429: the key holds all its quota allows."""
    code = "quota_exceeded"


class PayloadTooLarge(BothyError):
    code = "payload_too_large"


class UnsupportedMediaType(BothyError):
    code = "unsupported_media_type"


class Internal(BothyError):
    code = "internal"


class NoSpace(BothyError):
    code = "no_space"


class Unavailable(BothyError):
    code = "unavailable"


class NotListening(BothyError):
    """502: nothing listens on the sandbox's port."""
    code = "not_listening"


class NotSupported(BothyError):
    """501: the runtime cannot do it (pausing a sandbox on Kubernetes)."""
    code = "not_implemented"


_BY_CODE: Dict[str, Type[BothyError]] = {
    cls.code: cls for cls in (
        InvalidArgument, Unauthenticated, Forbidden, NotFound, MethodNotAllowed, Conflict,
        RateLimited, QuotaExceeded, PayloadTooLarge, UnsupportedMediaType, Internal, NoSpace,
        Unavailable, NotListening, NotSupported)
}


def error_for(code: str, message: str, *, status: int = 0, request_id: str = "",
              retry_after: Optional[int] = None) -> BothyError:
    """The exception of an error code (BothyError itself for a code this
    client does not know)."""
    cls = _BY_CODE.get(code, BothyError)
    return cls(message, code=code, status=status, request_id=request_id, retry_after=retry_after)
