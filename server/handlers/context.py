"""``ts.context``: what a handler knows about its model, its worker and the requests of the current batch.

`Context` is built once per worker at load time (model name, manifest, system properties, model-config
YAML, metrics); `HandlerService.predict` fills ``request_ids`` and ``request_processor`` for each batch.
Per-request response control (status, content type, headers) goes through the `RequestProcessor` of
each batch index and is read back when the reply is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from server.handlers.metrics import MetricsCache

SERVER_NAME = "MMS"  # sic: what TorchServe reports
SERVER_VERSION = "0.12.0"


class RequestProcessor:
    """One request of a batch: its headers in, its status and headers out."""

    def __init__(self, request_header: dict[str, Any]) -> None:
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}
        self._request_header = request_header

    def get_request_property(self, key: str) -> Any:
        return self._request_header.get(key)

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header

    def get_response_header(self, key: str) -> str | None:
        return self._response_header.get(key)


class Context:
    """TorchServe's handler context (spec §6.4)."""

    def __init__(
        self,
        model_name: str,
        model_dir: str,
        manifest: dict[str, Any] | None,
        batch_size: int,
        gpu: int | None,
        mms_version: str = SERVER_VERSION,
        limit_max_image_pixels: bool = True,
        metrics: MetricsCache | None = None,
        model_yaml_config: dict[str, Any] | None = None,
    ) -> None:
        self.model_name = model_name
        self.manifest = manifest
        self._system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": gpu,
            "batch_size": batch_size,
            "server_name": SERVER_NAME,
            "server_version": mms_version,
            "limit_max_image_pixels": limit_max_image_pixels,
        }
        self.request_ids: dict[int, str] | None = None
        self._request_processor: list[RequestProcessor] | None = None
        self._metrics = metrics if metrics is not None else MetricsCache(model_name)
        self.model_yaml_config: dict[str, Any] = model_yaml_config if model_yaml_config is not None else {}
        self.stopping_criteria: list[Callable[[Any], bool | None]] | None = None
        self.cl_socket: Any = None  # TorchServe hands handlers the raw socket; ours stays None
        # Set by the worker when it can send intermediate (streamed) replies: called with a `Reply`.
        self.intermediate_sender: Callable[[Any], None] | None = None
        self.header_key_sequence_id = os.getenv("TS_REQUEST_SEQUENCE_ID", "ts_request_sequence_id")
        self.header_key_sequence_start = os.getenv("TS_REQUEST_SEQUENCE_START", "ts_request_sequence_start")
        self.header_key_sequence_end = os.getenv("TS_REQUEST_SEQUENCE_END", "ts_request_sequence_end")

    # -- properties ----------------------------------------------------------------------------------

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    @property
    def request_processor(self) -> list[RequestProcessor] | None:
        return self._request_processor

    @request_processor.setter
    def request_processor(self, request_processor: list[RequestProcessor] | None) -> None:
        self._request_processor = request_processor

    @property
    def metrics(self) -> MetricsCache:
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: MetricsCache) -> None:
        self._metrics = metrics

    # -- requests ------------------------------------------------------------------------------------

    def _processor(self, idx: int) -> RequestProcessor:
        if self._request_processor is None:
            raise IndexError(f"no request {idx}: the context holds no batch")
        return self._request_processor[idx]

    def get_request_id(self, idx: int = 0) -> str | None:
        if self.request_ids is None:
            return None
        return self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        """A request header (name as sent), a synthetic header, or ``{"content-type": ...}`` for an input."""
        return self._processor(idx).get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self._processor(idx).get_request_properties()

    def get_sequence_id(self, idx: int) -> str | None:
        return self._processor(idx).get_request_property(self.header_key_sequence_id)

    # -- responses -----------------------------------------------------------------------------------

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self._request_processor is not None and self._request_processor[idx] is not None:
            self._request_processor[idx].report_status(code, reason_phrase=phrase)

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        for processor in self._request_processor or []:
            processor.report_status(code, reason_phrase=phrase)

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self._processor(idx)
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._processor(idx).add_response_property(key, value)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._processor(idx).get_response_headers()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Context) and self.__dict__ == other.__dict__
