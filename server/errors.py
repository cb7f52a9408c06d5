"""The server's error family, mapped once to TorchServe's JSON error body and HTTP status (spec §0.4).

Every error a client can see is a `ServeError` with a status, a TorchServe exception type name and a
message; adapters render it as ``{"code": ..., "type": ..., "message": ...}`` (REST) or a gRPC status.
"""

from __future__ import annotations

NOT_FOUND_TEXT = "Requested resource is not found, please refer to API document."
NOT_ALLOWED_TEXT = "Requested method is not allowed, please refer to API document."


class ServeError(Exception):
    status = 500
    type = "InternalServerException"

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message or "")
        self.message = message
        if status is not None:
            self.status = status

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


class RequestTimeout(ServeError):
    status, type = 408, "RequestTimeoutException"


class Conflict(ServeError):
    status, type = 409, "ConflictStatusException"


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
