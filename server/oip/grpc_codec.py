"""The Open Inference Protocol's gRPC encoding: ModelInferRequest -> InferRequest, InferResponse -> ModelInferResponse.

Tensor data comes either as typed `contents` (BOOL: bool_contents; INT8/16/32: int_contents; INT64:
int64_contents; UINT8/16/32: uint_contents; UINT64: uint64_contents; FP16 and FP32: fp32_contents; FP64:
fp64_contents; BYTES: bytes_contents, one entry per element) or as `raw_input_contents`, one entry per input
in input order, in the same raw encoding as REST's binary extension (what tritonclient.grpc always sends).
Replies mirror that: `raw=True` puts every output's data in `raw_output_contents` (as Triton does, the
outputs carry no contents), `raw=False` fills the typed contents.

`InferParameter` values become Python bool/int/str. Triton's proto adds `double_param` (4) and
`uint64_param` (5), which our proto lacks; tritonclient sends `priority` as uint64_param, so those two are read
from the message's unknown fields. Reply parameters that are neither bool, int nor str go out as JSON text.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from google.protobuf.unknown_fields import UnknownFieldSet

from server.api.grpc.proto import open_inference_pb2 as pb
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

CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP16": "fp32_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_FIELDS = tuple(dict.fromkeys(CONTENTS_FIELD.values()))
_SHARED_MEMORY = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
_INT64 = (-(2**63), 2**63 - 1)


def _param_value(param: pb.InferParameter) -> Any:
    kind = param.WhichOneof("parameter_choice")
    if kind is not None:
        return getattr(param, kind)
    for unknown in UnknownFieldSet(param):  # Triton's double_param (4, fixed64) and uint64_param (5, varint)
        if unknown.field_number == 4 and unknown.wire_type == 1:
            return struct.unpack("<d", struct.pack("<Q", unknown.data))[0]
        if unknown.field_number == 5 and unknown.wire_type == 0:
            return unknown.data
    return None


def parameters_from_proto(params: Any) -> dict[str, Any]:
    """A `map<string, InferParameter>` as a plain dict."""
    return {key: _param_value(value) for key, value in params.items()}


def _set_param(param: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int) and _INT64[0] <= value <= _INT64[1]:
        param.int64_param = value
    elif isinstance(value, str):
        param.string_param = value
    else:
        param.string_param = json.dumps(value)


def parameters_to_proto(target: Any, params: dict[str, Any]) -> None:
    for key, value in params.items():
        _set_param(target[key], value)


def _populated(contents: pb.InferTensorContents) -> list[str]:
    return [name for name in _ALL_FIELDS if len(getattr(contents, name))]


def _input(item: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> Tensor:
    name = item.name
    if not name:
        raise BadRequest("Every input needs a non-empty 'name'.")
    check_datatype(name, item.datatype)
    shape = check_shape(name, list(item.shape))
    params = parameters_from_proto(item.parameters)
    if any(key in params for key in _SHARED_MEMORY):
        raise BadRequest(f"Input '{name}': shared memory is not supported.")
    populated = _populated(item.contents)
    if raw is not None:
        if populated:
            raise BadRequest(
                f"Input '{name}' has both contents ({', '.join(populated)}) and raw_input_contents; send one."
            )
        tensor = tensor_from_raw(name, item.datatype, shape, raw)
    else:
        field = CONTENTS_FIELD[item.datatype]
        others = [f for f in populated if f != field]
        if others:
            raise BadRequest(f"Input '{name}': {item.datatype} values go in contents.{field}, got {', '.join(others)}.")
        values = list(getattr(item.contents, field))
        if len(values) != math.prod(shape):
            raise BadRequest(
                f"Input '{name}': shape {shape} needs {math.prod(shape)} values in contents.{field}, got {len(values)}."
            )
        tensor = tensor_from_values(name, item.datatype, shape, values)
    tensor.parameters = params
    return tensor


def request_from_proto(msg: pb.ModelInferRequest) -> InferRequest:
    """Validate and decode a ModelInferRequest (typed contents, or raw_input_contents one per input)."""
    if not msg.inputs:
        raise BadRequest("The inference request must have at least one input.")
    raws: list[bytes | None] = [None] * len(msg.inputs)
    if msg.raw_input_contents:
        if len(msg.raw_input_contents) != len(msg.inputs):
            raise BadRequest(
                f"raw_input_contents has {len(msg.raw_input_contents)} entries but the request has "
                f"{len(msg.inputs)} inputs; send one entry per input, in input order."
            )
        raws = list(msg.raw_input_contents)
    inputs: list[Tensor] = []
    for item, raw in zip(msg.inputs, raws, strict=True):
        tensor = _input(item, raw)
        if any(t.name == tensor.name for t in inputs):
            raise BadRequest(f"Input '{tensor.name}' appears more than once.")
        inputs.append(tensor)
    outputs: list[RequestedOutput] = []
    for out in msg.outputs:
        if not out.name:
            raise BadRequest("Every requested output needs a non-empty 'name'.")
        if any(o.name == out.name for o in outputs):
            raise BadRequest(f"Output '{out.name}' is requested more than once.")
        params = parameters_from_proto(out.parameters)
        if any(key in params for key in _SHARED_MEMORY):
            raise BadRequest(f"Output '{out.name}': shared memory is not supported.")
        outputs.append(RequestedOutput(name=out.name, parameters=params))
    return InferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version or None,
        id=msg.id or None,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters_from_proto(msg.parameters),
    )


def response_to_proto(response: InferResponse, *, raw: bool) -> pb.ModelInferResponse:
    """Encode a reply: `raw=True` fills raw_output_contents (one per output, in order), else typed contents."""
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version or "", id=response.id or ""
    )
    parameters_to_proto(msg.parameters, response.parameters)
    for tensor in response.outputs:
        out = msg.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        parameters_to_proto(out.parameters, tensor.parameters)
        if raw:
            msg.raw_output_contents.append(to_raw(tensor))
        else:
            values = tensor.data.ravel(order="C")
            if tensor.datatype == "BYTES":
                items = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in values]
            else:
                items = values.tolist()
            getattr(out.contents, CONTENTS_FIELD[tensor.datatype]).extend(items)
    return msg
