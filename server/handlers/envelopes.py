"""Request envelopes (``service_envelope``, spec §6.7): reshape a batch before and after the handler.

* ``body``: the handler gets ``[row["data"] or row["body"] for row in data]``; output unchanged.
* ``json``: each request is ``{"instances": [...]}`` (instances ``{"b64": ...}`` — whole or per field —
  are base64-decoded); the handler gets all instances of the batch as one flat list and each request
  gets back ``{"predictions": [...]}`` (its share of the output) as a JSON string.

``kserve`` and ``kservev2`` are not implemented yet (`HandlerService.load` refuses them).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from base64 import b64decode
from collections.abc import Callable
from typing import Any

HandleFn = Callable[[Any, Any], Any]


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and list(value.keys()) == ["b64"]


class BaseEnvelope(ABC):
    """Wraps a handler's ``handle``: ``parse_input`` before, ``format_output`` after."""

    def __init__(self, handle_fn: HandleFn) -> None:
        self._handle_fn = handle_fn
        self.context: Any = None

    def handle(self, data: Any, context: Any) -> Any:
        self.context = context
        if data:
            data = self.parse_input(data)
        results = self._handle_fn(data, context)
        if results:
            results = self.format_output(results)
        return results

    @abstractmethod
    def parse_input(self, data: Any) -> Any: ...

    @abstractmethod
    def format_output(self, data: Any) -> Any: ...


class BodyEnvelope(BaseEnvelope):
    def parse_input(self, data: list[dict[str, Any]]) -> list[Any]:
        return [row.get("data") or row.get("body") for row in data]

    def format_output(self, data: Any) -> Any:
        return data


class JSONEnvelope(BaseEnvelope):
    def __init__(self, handle_fn: HandleFn) -> None:
        super().__init__(handle_fn)
        self._lengths: list[int] = []

    def parse_input(self, data: list[dict[str, Any]]) -> list[Any]:
        batches = [self._from_json(row) for row in data]
        self._lengths = [len(b) for b in batches]
        return [instance for batch in batches for instance in batch]

    def format_output(self, data: list[Any]) -> list[str]:
        outputs = []
        cursor = 0
        for length in self._lengths:
            outputs.append(json.dumps({"predictions": data[cursor : cursor + length]}))
            cursor += length
        return outputs

    @staticmethod
    def _from_json(row: dict[str, Any]) -> list[Any]:
        payload = row.get("data") or row.get("body") or row
        if isinstance(payload, (bytes, bytearray)):
            payload = json.loads(payload.decode("utf-8"))
        rows = payload["instances"]
        if rows and isinstance(rows[0], dict):
            for i, instance in enumerate(rows):
                if _is_b64(instance):
                    rows[i] = b64decode(instance["b64"])
                else:
                    for key, value in instance.items():
                        if _is_b64(value):
                            instance[key] = b64decode(value["b64"])
        return rows


ENVELOPES: dict[str, type[BaseEnvelope]] = {"body": BodyEnvelope, "json": JSONEnvelope}
NOT_YET_SUPPORTED = ("kserve", "kservev2")
