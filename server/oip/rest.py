"""The Open Inference Protocol's REST encoding: parse `/v2/models/{m}/infer` bodies, render their replies.

Two request forms are accepted (KServe v2 and Triton's binary-tensor extension):

* a JSON body, each input with `data` (flat or nested, row-major; BYTES elements as JSON strings, stored as
  their UTF-8 bytes);
* with the `Inference-Header-Content-Length: N` header, the first N bytes are the JSON header and the raw
  tensors follow in input order; an input carrying `"parameters": {"binary_data_size": k}` takes the next k
  bytes (and has no `data`). The sizes must add up exactly to the bytes after the header.

Replies are JSON (`data` flattened row-major) unless the request asked for binary outputs, through
`"parameters": {"binary_data_output": true}` or a requested output's `"parameters": {"binary_data": true}`
(the per-output flag wins). Binary outputs carry `parameters.binary_data_size`, their bytes follow the JSON
header, and the reply gets `Inference-Header-Content-Length` and `Content-Type: application/octet-stream`.
BYTES outputs in JSON are UTF-8 strings, which tritonclient.http reads back as `str` elements; a BYTES
output holding bytes that are not valid UTF-8 has no JSON string form, so it is sent in binary form even if
not asked for (tritonclient reads that back as the exact `bytes`).
"""

from __future__ import annotations

import json
from typing import Any

from server.errors import BadRequest
from server.oip.tensors import (
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    check_datatype,
    check_shape,
    tensor_from_raw,
    tensor_from_values,
    to_raw,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def _header_length(value: str, body_size: int) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(f"{HEADER_LENGTH} must be a non-negative integer, got {value!r}.")
    length = int(text)
    if length > body_size:
        raise BadRequest(f"{HEADER_LENGTH} is {length} but the request body has only {body_size} bytes.")
    return length


def _load_json(header: bytes) -> dict[str, Any]:
    if not header.strip():
        raise BadRequest("The inference request body is empty; expected a JSON object with 'inputs'.")
    try:
        doc = json.loads(header)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"The inference request is not valid JSON: {e}") from e
    except RecursionError:
        raise BadRequest("The inference request's JSON is nested too deeply.") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"The inference request must be a JSON object, got {type(doc).__name__}.")
    return doc


def _parameters(where: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: 'parameters' must be a JSON object, got {type(value).__name__}.")
    return value


def _requested_outputs(value: object) -> list[RequestedOutput]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"'outputs' must be a list, got {type(value).__name__}.")
    outputs: list[RequestedOutput] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadRequest(f"outputs[{i}] must be a JSON object.")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"outputs[{i}]: 'name' must be a non-empty string.")
        if any(o.name == name for o in outputs):
            raise BadRequest(f"Output '{name}' is requested more than once.")
        params = _parameters(f"Output '{name}'", item.get("parameters"))
        if any(key in params for key in _SHARED_MEMORY):
            raise BadRequest(f"Output '{name}': shared memory is not supported.")
        outputs.append(RequestedOutput(name=name, parameters=params))
    return outputs


def _input(i: int, item: object, binary: bytes, offset: int, has_header: bool) -> tuple[Tensor, int]:
    """One input tensor and the new offset into the binary part."""
    if not isinstance(item, dict):
        raise BadRequest(f"inputs[{i}] must be a JSON object.")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{i}]: 'name' must be a non-empty string.")
    for key in ("datatype", "shape"):
        if key not in item:
            raise BadRequest(f"Input '{name}': '{key}' is required.")
    datatype = item["datatype"]
    check_datatype(name, datatype)
    shape = check_shape(name, item["shape"])
    params = dict(_parameters(f"Input '{name}'", item.get("parameters")))
    if any(key in params for key in _SHARED_MEMORY):
        raise BadRequest(f"Input '{name}': shared memory is not supported.")
    size = params.pop("binary_data_size", None)
    if size is None:
        if "data" not in item:
            raise BadRequest(f"Input '{name}' has no 'data' and no parameters.binary_data_size.")
        tensor = tensor_from_values(name, datatype, shape, item["data"])
    else:
        if not has_header:
            raise BadRequest(
                f"Input '{name}' has parameters.binary_data_size but the request has no {HEADER_LENGTH} header."
            )
        if type(size) is not int or size < 0:
            raise BadRequest(f"Input '{name}': binary_data_size must be a non-negative integer, got {size!r}.")
        if "data" in item:
            raise BadRequest(f"Input '{name}' has both 'data' and parameters.binary_data_size; send one.")
        if offset + size > len(binary):
            raise BadRequest(
                f"Input '{name}': binary_data_size {size} goes past the end of the body "
                f"({len(binary) - offset} bytes of binary data remain)."
            )
        tensor = tensor_from_raw(name, datatype, shape, binary[offset : offset + size])
        offset += size
    tensor.parameters = params
    return tensor, offset


def parse_infer_request(
    model_name: str, model_version: str | None, body: bytes, header_length: str | None
) -> InferRequest:
    """Parse a REST inference request (JSON, or the binary extension when `header_length` is given)."""
    if header_length is None:
        header, binary = body, b""
    else:
        n = _header_length(header_length, len(body))
        header, binary = body[:n], body[n:]
    doc = _load_json(header)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"'id' must be a string, got {type(request_id).__name__}.")
    parameters = _parameters("The request", doc.get("parameters"))
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("The inference request must have 'inputs': a non-empty list of tensors.")
    inputs: list[Tensor] = []
    offset = 0
    for i, item in enumerate(raw_inputs):
        tensor, offset = _input(i, item, binary, offset, header_length is not None)
        if any(t.name == tensor.name for t in inputs):
            raise BadRequest(f"Input '{tensor.name}' appears more than once.")
        inputs.append(tensor)
    if offset != len(binary):
        raise BadRequest(
            f"The inputs' binary_data_size values add up to {offset} bytes but the body has {len(binary)} "
            "bytes after the JSON header."
        )
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=request_id,
        inputs=inputs,
        outputs=_requested_outputs(doc.get("outputs")),
        parameters=parameters,
    )


def _wants_binary(name: str, request: InferRequest) -> bool:
    for output in request.outputs:
        if output.name == name and isinstance(output.parameters.get("binary_data"), bool):
            return output.parameters["binary_data"]
    return request.parameters.get("binary_data_output") is True


def _json_data(tensor: Tensor) -> list[Any] | None:
    """The tensor's values, flattened row-major, as JSON values; None for BYTES that are not all UTF-8."""
    flat = tensor.data.ravel(order="C")
    if tensor.datatype != "BYTES":
        return flat.tolist()
    try:
        return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in flat]
    except UnicodeDecodeError:
        return None


def render_infer_response(response: InferResponse, request: InferRequest) -> tuple[bytes, dict[str, str]]:
    """The reply body and the headers to add (Content-Type, and the header length for binary replies)."""
    doc: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        doc["model_version"] = response.model_version
    if response.id is not None:
        doc["id"] = response.id
    if response.parameters:
        doc["parameters"] = response.parameters
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        data = None if _wants_binary(tensor.name, request) else _json_data(tensor)
        if data is None:
            raw = to_raw(tensor)
            chunks.append(raw)
            entry["parameters"] = {**tensor.parameters, "binary_data_size": len(raw)}
        else:
            if tensor.parameters:
                entry["parameters"] = dict(tensor.parameters)
            entry["data"] = data
        outputs.append(entry)
    doc["outputs"] = outputs
    header = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    if not chunks:
        return header, {"Content-Type": "application/json"}
    return b"".join([header, *chunks]), {
        HEADER_LENGTH: str(len(header)),
        "Content-Type": "application/octet-stream",
    }
