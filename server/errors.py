"""The server's error family, mapped once to TorchServe's JSON error body, HTTP status and gRPC code.

Every error a client can see is a `ServeError` with a status, a TorchServe exception type name and a
message; adapters render it as ``{"code": ..., "type": ..., "message": ...}`` (REST, spec §0.4) or as a
gRPC status whose code is `ServeError.grpc_code` (spec §4.2: the same table TorchServe applies to worker
errors, used here for every error, so a front door never decides a code of its own).
"""

from __future__ import annotations

NOT_FOUND_TEXT = "Requested resource is not found, please refer to API document."
NOT_ALLOWED_TEXT = "Requested method is not allowed, please refer to API document."


# HTTP status -> gRPC status code name (grpc.StatusCode member). Other 4xx: FAILED_PRECONDITION; other: INTERNAL.
GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "PERMISSION_DENIED",  # the model API is off (TorchServe: PERMISSION_DENIED "Model API disabled")
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "RESOURCE_EXHAUSTED",
    416: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    507: "RESOURCE_EXHAUSTED",
}


def grpc_code_for(status: int) -> str:
    """The gRPC status code name for an HTTP status (spec §4.2's table)."""
    if status in GRPC_CODES:
        return GRPC_CODES[status]
    return "FAILED_PRECONDITION" if 400 <= status < 500 else "INTERNAL"


class ServeError(Exception):
    status = 500
    type = "InternalServerException"
    grpc_text: str | None = None  # what a gRPC client reads instead of `message`, where TorchServe differs

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message or "")
        self.message = message
        if status is not None:
            self.status = status

    @property
    def grpc_code(self) -> str:
        return grpc_code_for(self.status)

    @property
    def grpc_message(self) -> str:
        return self.grpc_text if self.grpc_text is not None else self.message or ""

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.status, "type": self.type}
        if self.message is not None:
            out["message"] = self.message
        return out


class BadRequest(ServeError):
    status, type = 400, "BadRequestException"


class InvalidModel(ServeError):
    status, type = 400, "InvalidModelException"


class DownloadArchiveError(ServeError):
    status, type = 400, "DownloadArchiveException"


class InvalidModelVersion(ServeError):
    status, type = 403, "InvalidModelVersionException"


class ResourceNotFound(ServeError):
    status, type = 404, "ResourceNotFoundException"

    def __init__(self, message: str = NOT_FOUND_TEXT) -> None:
        super().__init__(message)


class ModelNotFound(ServeError):
    status, type = 404, "ModelNotFoundException"


class ModelVersionNotFound(ServeError):
    status, type = 404, "ModelVersionNotFoundException"


class MethodNotAllowed(ServeError):
    status, type = 405, "MethodNotAllowedException"

    def __init__(self, message: str = NOT_ALLOWED_TEXT) -> None:
        super().__init__(message)


class Forbidden(ServeError):
    status, type = 403, "ForbiddenException"


class ModelApiDisabled(MethodNotAllowed):
    """Register/unregister while the model API is off (spec §13.3)."""

    grpc_text = "Model API disabled"


class RequestTimeout(ServeError):
    status, type = 408, "RequestTimeoutException"


class Conflict(ServeError):
    status, type = 409, "ConflictStatusException"

    @property
    def grpc_code(self) -> str:
        return "ALREADY_EXISTS"


class RequestTooLarge(ServeError):
    """A request or reply over ``max_request_size`` / ``max_response_size``."""

    status, type = 413, "RequestEntityTooLarge"


class InternalServerError(ServeError):
    status, type = 500, "InternalServerException"


class ServiceUnavailable(ServeError):
    status, type = 503, "ServiceUnavailableException"


class WorkerError(InternalServerError):
    """A whole batch failed in the worker: TorchServe reports the worker's code and message (spec §1.4)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message, status=507 if code == 413 else code)


class WorkerDied(InternalServerError):
    """The worker crashed or timed out with the request in flight."""

    def __init__(self, oom_killed: bool = False) -> None:
        super().__init__("Worker died.", status=507 if oom_killed else 500)


def no_worker(model: str, version: str | None = None) -> ServiceUnavailable:
    """503 when a model version has no worker at all or its queue is full (TorchServe's exact text)."""
    prefix = f'Model "{model}" Version {version}"' if version else f'Model "{model}"'
    return ServiceUnavailable(
        f"{prefix} has no worker to serve inference request. Please use scale workers API to add workers. "
        "If this is a sequence inference, please check if it is closed, or expired; "
        "or exceeds maxSequenceJobQueueSize"
    )
