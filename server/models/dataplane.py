"""The inference rules, once, for every front door: TorchServe REST and gRPC, the Open Inference Protocol.

`DataPlane` answers health and readiness and runs predictions through the registry's worker pools. A front
door turns its request into a `Request` (the handler's inputs and headers), calls `predict` or `stream`, and
renders the `Response` objects it gets back. Cancelling the awaiting task (a client that disconnects,
cancels, or passes its deadline) takes a queued request out of the queue before any worker sees it; one
already in flight is answered by its worker and the answer dropped (the pool counts both).
"""

from __future__ import annotations

from server.errors import RequestTooLarge
from server.models.registry import ModelVersion, Registry
from server.runtime.messages import Request, Response
from server.runtime.pool import Answers, WorkerStatus


def ready_workers(entry: ModelVersion) -> int:
    return sum(1 for w in entry.pool.workers() if w.status == WorkerStatus.READY)


def is_ready(entry: ModelVersion) -> bool:
    """A version can answer now: it has a loaded worker, and at least as many as its minimum."""
    ready = ready_workers(entry)
    return ready >= 1 and ready >= entry.min_workers


class DataPlane:
    def __init__(self, registry: Registry, max_response_size: int = 0) -> None:
        self.registry = registry
        self.max_response_size = max_response_size  # 0: no limit

    def _bounded(self, response: Response) -> Response:
        """``max_response_size`` bounds every answer, on every front door (413 / RESOURCE_EXHAUSTED)."""
        if self.max_response_size and len(response.body) > self.max_response_size:
            raise RequestTooLarge(
                f"The answer ({len(response.body)} bytes) is larger than max_response_size ({self.max_response_size})"
            )
        return response

    # ---- health -------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """TorchServe's ping (spec §1.2): every default version has enough workers that have not given up."""
        return all(self.registry.get(name).pool.healthy() for name in list(self.registry.models))

    def ping(self) -> tuple[int, dict[str, str]]:
        """The ``/ping`` answer and its HTTP status (gRPC ``Ping`` sends the same JSON)."""
        healthy = self.healthy()
        return (200 if healthy else 500), {"status": "Healthy" if healthy else "Unhealthy"}

    def server_ready(self) -> bool:
        """Every version that should have workers has them loaded (unlike TorchServe, which says ready while
        models fail to load: pytorch/serve#2099). Versions scaled to zero do not count."""
        return all(is_ready(v) for v in self.registry.all_versions() if v.min_workers > 0)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """The version (default when None) has loaded workers; raises ModelNotFound / ModelVersionNotFound."""
        return is_ready(self.registry.get(name, version))

    # ---- predictions --------------------------------------------------------------------------

    async def predict(self, name: str, version: str | None, request: Request) -> Response:
        """Queue ``request`` for the version (default when None) and return its worker's answer."""
        entry = self.registry.get(name, version)
        return self._bounded(await entry.pool.predict(request, url_version=version))

    def stream(self, name: str, version: str | None, request: Request) -> Answers:
        """Like `predict`: an async iterator of each intermediate response of a streaming handler, then the
        last one (exactly one when the handler does not stream). Closing it early (``aclose``: a client that
        went away) cancels the request like a cancelled `predict`."""
        entry = self.registry.get(name, version)
        return entry.pool.predict_stream(request, url_version=version, check=self._bounded)
