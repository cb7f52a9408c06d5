"""One async client for every API of a tsconsole (or TorchServe) server.

The console and the scripting commands talk to the server only through this class, as any remote
client would; nothing else builds URLs. It imports nothing from Textual.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

DEFAULT_INFERENCE = "http://127.0.0.1:8080"
DEFAULT_MANAGEMENT = "http://127.0.0.1:8081"
DEFAULT_METRICS = "http://127.0.0.1:8082"


class ApiError(Exception):
    """The server answered with an error: TorchServe's ``{"code", "type", "message"}`` when it sent one."""

    def __init__(self, status: int, message: str, type_: str = "") -> None:
        super().__init__(f"{status} {type_ + ': ' if type_ else ''}{message}")
        self.status = status
        self.message = message
        self.type = type_


class Unreachable(Exception):
    """No server answers at the address (refused, timed out, DNS)."""


@dataclass(frozen=True)
class Endpoints:
    inference: str = DEFAULT_INFERENCE
    management: str = DEFAULT_MANAGEMENT
    metrics: str = DEFAULT_METRICS
    token: str | None = None  # management/inference key, sent as "Authorization: Bearer <token>"
    inference_token: str | None = None


@dataclass(frozen=True)
class Listeners:
    """Where the server listens, as it says in ``/console/system`` (a tsconsole server; TorchServe has none).

    REST listeners are URLs (``unix:/path`` for a socket); gRPC ones ``host:port``. ``""``: not reported;
    ``metrics`` is also ``""`` when the server's metrics API is off.
    """

    inference: str = ""
    management: str = ""
    metrics: str = ""
    grpc_inference: str = ""
    grpc_management: str = ""

    @classmethod
    def parse(cls, data: object) -> Listeners | None:
        """The ``listeners`` object of a ``/console/system`` answer; None when it has none (or not an object)."""
        if not isinstance(data, Mapping):
            return None
        known = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
        values = {key: data.get(key) for key in known}
        return cls(**{key: value if isinstance(value, str) else "" for key, value in values.items()})

    @property
    def grpc(self) -> bool:
        """The server reports a gRPC listener."""
        return bool(self.grpc_inference or self.grpc_management)


@dataclass
class Prediction:
    status: int
    body: bytes
    content_type: str
    elapsed_ms: float
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def read_key_file(path: Path) -> tuple[str | None, str | None]:
    """(management key, inference key) from TorchServe's ``key_file.json``, if it is there."""
    try:
        data = json.loads(path.read_text())
        return data["management"]["key"], data["inference"]["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def split_socket(url: str) -> tuple[str, str | None]:
    """A REST address as (base URL, Unix socket path): ``unix:/run/ts.sock`` is ``("http://localhost",
    "/run/ts.sock")``; any other URL is itself (without a trailing ``/``) and None."""
    if url.startswith("unix:"):
        return "http://localhost", url[len("unix:") :]
    return url.rstrip("/"), None


def _transport(url: str) -> tuple[str, httpx.AsyncHTTPTransport | None]:
    base, socket = split_socket(url)
    return base, httpx.AsyncHTTPTransport(uds=socket) if socket else None


class Client:
    """``async with Client(Endpoints(...)) as c: await c.list_models()``."""

    def __init__(self, endpoints: Endpoints | None = None, *, timeout: float = 30.0) -> None:
        self.endpoints = endpoints or Endpoints()
        self._clients: dict[str, tuple[str, httpx.AsyncClient]] = {}
        for role in ("inference", "management", "metrics"):
            base, transport = _transport(getattr(self.endpoints, role))
            token = self.endpoints.inference_token if role == "inference" else self.endpoints.token
            headers = {"Authorization": f"Bearer {token}"} if token and role != "metrics" else {}
            self._clients[role] = (base, httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for _, client in self._clients.values():
            await client.aclose()

    async def _request(self, role: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        base, client = self._clients[role]
        try:
            response = await client.request(method, base + path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {base}: {exc or type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise _error(response)
        return response

    async def _json(self, role: str, method: str, path: str, **kwargs: Any) -> Any:
        return (await self._request(role, method, path, **kwargs)).json()

    # ---- inference ------------------------------------------------------------------------------

    async def ping(self) -> str:
        base, client = self._clients["inference"]
        try:
            response = await client.get(base + "/ping")
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {base}: {exc or type(exc).__name__}") from exc
        if response.status_code == 400:
            raise _error(response)
        return response.json().get("status", "Unknown")

    async def predict(
        self,
        model: str,
        body: bytes,
        *,
        version: str | None = None,
        content_type: str | None = None,
        explain: bool = False,
        timeout: float | None = 120.0,
    ) -> Prediction:
        """One request; an error status is returned (not raised) so the caller can show it."""
        path = f"/{'explanations' if explain else 'predictions'}/{model}" + (f"/{version}" if version else "")
        base, client = self._clients["inference"]
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            response = await client.post(base + path, content=body, headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {base}: {exc or type(exc).__name__}") from exc
        return Prediction(
            status=response.status_code,
            body=response.content,
            content_type=response.headers.get("content-type", ""),
            elapsed_ms=response.elapsed.total_seconds() * 1000,
            headers=dict(response.headers),
        )

    # ---- management -----------------------------------------------------------------------------

    async def list_models(self) -> list[dict[str, Any]]:
        """Every model (default versions), following the pagination."""
        models: list[dict[str, Any]] = []
        token: str | None = "0"
        while token is not None:
            page = await self._json("management", "GET", "/models", params={"limit": 100, "next_page_token": token})
            models += page.get("models", [])
            token = page.get("nextPageToken") if page.get("models") else None
        return models

    async def describe(self, model: str, version: str | None = None, *, customized: bool = False) -> list[dict]:
        path = f"/models/{model}" + (f"/{version}" if version else "")
        params = {"customized": "true"} if customized else None
        return await self._json("management", "GET", path, params=params)

    async def describe_all(self, model: str) -> list[dict[str, Any]]:
        return await self._json("management", "GET", f"/models/{model}/all")

    async def register(self, url: str, **params: Any) -> dict[str, Any]:
        """``POST /models?url=...``; params as TorchServe names them (``initial_workers``, ``batch_size``…)."""
        query = {"url": url} | {k: _param(v) for k, v in params.items() if v is not None}
        return await self._json("management", "POST", "/models", params=query)

    async def scale(
        self,
        model: str,
        min_workers: int,
        max_workers: int | None = None,
        *,
        version: str | None = None,
        synchronous: bool = False,
    ) -> dict[str, Any]:
        path = f"/models/{model}" + (f"/{version}" if version else "")
        params = {"min_worker": min_workers, "synchronous": _param(synchronous)}
        if max_workers is not None:
            params["max_worker"] = max_workers
        return await self._json("management", "PUT", path, params=params)

    async def set_default(self, model: str, version: str) -> dict[str, Any]:
        return await self._json("management", "PUT", f"/models/{model}/{version}/set-default")

    async def unregister(self, model: str, version: str | None = None) -> dict[str, Any]:
        return await self._json("management", "DELETE", f"/models/{model}" + (f"/{version}" if version else ""))

    # ---- console endpoints (tsconsole servers only) --------------------------------------------

    async def system(self) -> dict[str, Any]:
        """Host CPU/memory, per-GPU figures and per-worker process figures, as the server sees them, and its
        ``listeners`` (`Listeners.parse`)."""
        return await self._json("management", "GET", "/console/system")

    async def log_files(self) -> list[dict[str, Any]]:
        return (await self._json("management", "GET", "/console/logs"))["logs"]

    async def log_tail(self, name: str, lines: int = 200) -> list[str]:
        return (await self._json("management", "GET", f"/console/logs/{name}", params={"lines": lines}))["lines"]

    async def follow_log(self, name: str, lines: int = 0) -> AsyncIterator[str]:
        """Every new line of a server log file, as the server writes it (server-sent events)."""
        base, client = self._clients["management"]
        url = f"{base}/console/logs/{name}/follow"
        try:
            async with client.stream("GET", url, params={"lines": lines}, timeout=None) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response)
                async for raw in response.aiter_lines():
                    if raw.startswith("data:"):
                        yield raw[5:].removeprefix(" ")
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {base}: {exc or type(exc).__name__}") from exc

    async def upload_archive(
        self,
        files: Mapping[str, Path | Sequence[Path]],
        fields: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Send model files to the server, which builds a .mar in its model store (``POST /console/archives``).

        ``files`` maps a form field (``serialized_file``, ``model_file``, ``handler_file``, ``extra_files``,
        ``requirements_file``, ``config_file``) to a path or several; ``fields`` holds ``model_name``,
        ``version``, ``handler``, ``runtime``, ``force``.
        """
        parts: list[tuple[str, tuple[str, Any, str]]] = []
        handles = []
        try:
            for name, value in files.items():
                for path in [value] if isinstance(value, Path) else value:
                    handle = open(path, "rb")  # noqa: SIM115 - closed below, after the upload
                    handles.append(handle)
                    parts.append((name, (Path(path).name, handle, "application/octet-stream")))
            data = {k: _param(v) for k, v in fields.items() if v is not None}
            return await self._json("management", "POST", "/console/archives", data=data, files=parts, timeout=None)
        finally:
            for handle in handles:
                handle.close()

    # ---- metrics --------------------------------------------------------------------------------

    async def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Prometheus samples by family name (empty when the server is not in prometheus mode)."""
        text = (await self._request("metrics", "GET", "/metrics")).text
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name.removesuffix("_total") if family.type == "counter" else sample.name
                out.setdefault(name, []).append((dict(sample.labels), sample.value))
        return out


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        return ApiError(response.status_code, str(body.get("message", body)), str(body.get("type", "")))
    except (ValueError, AttributeError):
        return ApiError(response.status_code, response.text.strip() or response.reason_phrase)


def local_endpoints(env: Mapping[str, str] | None = None) -> Endpoints:
    """Addresses from ``TSCONSOLE_*`` variables or the running background server, else TorchServe's defaults."""
    env = os.environ if env is None else env
    from tsconsole.daemon import running

    record = running()
    return Endpoints(
        inference=env.get("TSCONSOLE_INFERENCE") or (record.inference if record else DEFAULT_INFERENCE),
        management=env.get("TSCONSOLE_MANAGEMENT") or (record.management if record else DEFAULT_MANAGEMENT),
        metrics=env.get("TSCONSOLE_METRICS") or (record.metrics if record else DEFAULT_METRICS),
    )
