"""Request envelopes (``service_envelope``, spec §6.7): reshape a batch before and after the handler.

* ``body``: the handler gets ``[row["data"] or row["body"] for row in data]``; output unchanged.
* ``json``: each request is ``{"instances": [...]}`` (instances ``{"b64": ...}`` — whole or per field —
  are base64-decoded); the handler gets all instances of the batch as one flat list and each request
  gets back ``{"predictions": [...]}`` (its share of the output) as a JSON string.
* ``kserve`` (KServe v1): only the first request is read; its body (JSON bytes or already parsed) is
  ``{"instances": [...]}`` and the handler gets the instances as they are (no base64 decoding, as in
  TorchServe 0.12). The output is ``[{"predictions": out}]``, or ``[{"explanations": out}]`` when the
  first request has the header ``explain: True``.
* ``kservev2`` (KServe v2 / Open Inference Protocol): only the first request is read; its body is
  ``{"id": ..., "inputs": [{"name", "shape", "datatype", "data"}, ...]}``. The handler gets the list of
  input dicts with ``data`` replaced by ``data[0]`` for ``BYTES`` inputs, else by the data reshaped to
  ``shape`` (nested lists). The output is ``[{"id", "model_name", "model_version", "outputs"}]`` where
  output ``i`` is named after input ``i`` and holds the handler's output ``i`` flattened, with its KServe
  datatype (from the numpy dtype) and ``shape`` ``[n]``. ``id`` is the body's ``id``, else the request id.

Like TorchServe, the kserve envelopes answer one response for the whole batch, so they need batch size 1.
A body an envelope cannot read raises (`EnvelopeError` or the like) and, like any handler error, fails the
batch (503 ``Prediction failed``, traceback on stderr).
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


class EnvelopeError(ValueError):
    """A request body (or handler output) the envelope cannot translate."""


def _first_body(data: list[dict[str, Any]], envelope: str) -> dict[str, Any]:
    """The first request's ``data`` or ``body`` as a JSON object (bytes are parsed as UTF-8 JSON)."""
    body = data[0].get("data") or data[0].get("body")
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError is a ValueError
            raise EnvelopeError(f"{envelope}: the request body is not valid JSON: {e}") from e
    if not isinstance(body, dict):
        raise EnvelopeError(f"{envelope}: the request body must be a JSON object, not {type(body).__name__}")
    return body


class KServeEnvelope(BaseEnvelope):
    """KServe v1: ``{"instances": [...]}`` in, ``{"predictions": ...}`` / ``{"explanations": ...}`` out."""

    def parse_input(self, data: list[dict[str, Any]]) -> Any:
        return _first_body(data, "kserve").get("instances")

    def format_output(self, data: Any) -> list[dict[str, Any]]:
        key = "explanations" if self._is_explain() else "predictions"
        return [{key: data}]

    def _is_explain(self) -> bool:
        return self.context is not None and self.context.get_request_header(0, "explain") == "True"


_KSERVE_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "object": "BYTES",
    "U": "BYTES",  # the dtype kind of numpy unicode strings (<U5, ...)
}
"""KServe v2 datatype by numpy dtype name, else by dtype kind."""


def kserve_datatype(dtype: Any) -> str:
    """The KServe v2 datatype of a numpy dtype; `EnvelopeError` for one KServe has no name for."""
    datatype = _KSERVE_DATATYPES.get(str(dtype)) or _KSERVE_DATATYPES.get(dtype.kind)
    if datatype is None:
        raise EnvelopeError(f"kservev2: no KServe datatype for numpy dtype {dtype}")
    return datatype


def _v2_input(item: Any) -> dict[str, Any]:
    """An input tensor with ``data`` as the handler gets it: ``data[0]`` for BYTES, else reshaped to ``shape``."""
    if not isinstance(item, dict) or not {"name", "datatype", "data"} <= item.keys():
        raise EnvelopeError('kservev2: each input must be an object with "name", "datatype" and "data"')
    values = item["data"]
    if item["datatype"] == "BYTES":
        if not isinstance(values, (list, str)) or not values:
            raise EnvelopeError(f"kservev2: input {item['name']!r}: BYTES data must be a non-empty list")
        return {**item, "data": values[0]}
    import numpy as np

    try:
        return {**item, "data": np.array(values).reshape(tuple(item["shape"])).tolist()}
    except (KeyError, TypeError, ValueError) as e:
        raise EnvelopeError(f"kservev2: input {item['name']!r}: cannot shape its data: {e!r}") from e


def _v2_output(name: Any, value: Any) -> dict[str, Any]:
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.array(value).flatten()
    return {"name": name, "datatype": kserve_datatype(array.dtype), "data": array.tolist(), "shape": [array.size]}


class KServev2Envelope(BaseEnvelope):
    """KServe v2: the first request's ``inputs`` in, one ``{"id", "model_name", ..., "outputs"}`` out."""

    def __init__(self, handle_fn: HandleFn) -> None:
        super().__init__(handle_fn)
        self._input_names: list[Any] = []
        self._request_id: str | None = None

    def parse_input(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = _first_body(data, "kservev2")
        if not isinstance(body.get("inputs"), list):
            raise EnvelopeError('kservev2: the request body has no "inputs" list')
        request_id = body.get("id")
        if request_id and not isinstance(request_id, str):
            raise EnvelopeError('kservev2: the request "id" must be a string')
        self._request_id = request_id if request_id and request_id.strip() else None
        inputs = [_v2_input(item) for item in body["inputs"]]
        self._input_names = [item["name"] for item in inputs]
        return inputs

    def format_output(self, data: Any) -> list[dict[str, Any]]:
        outputs = list(data)
        if len(outputs) > len(self._input_names):
            raise EnvelopeError(f"kservev2: {len(outputs)} outputs for {len(self._input_names)} inputs")
        model = (self.context.manifest or {}).get("model") or {}
        return [
            {
                "id": self._request_id or self.context.get_request_id(0),
                "model_name": model.get("modelName"),
                "model_version": model.get("modelVersion"),
                "outputs": [_v2_output(self._input_names[i], value) for i, value in enumerate(outputs)],
            }
        ]


ENVELOPES: dict[str, type[BaseEnvelope]] = {
    "body": BodyEnvelope,
    "json": JSONEnvelope,
    "kserve": KServeEnvelope,
    "kservev2": KServev2Envelope,
}
