"""How an Open Inference Protocol tensor reaches a TorchServe handler, and how the handler's answer comes back.

Each input tensor becomes one runtime `Request` with a single input named `data`, so the handler's row is
`{"data": ...}` after the worker's usual decoding (spec §6.2: `application/json` -> parsed JSON, anything
else -> bytearray):

* numeric and BOOL tensors: the JSON text of the values in their shape (`application/json`);
* a BYTES tensor with exactly one element: that element's bytes, unchanged, with no content type (an image
  handler reading `row["data"]` gets the image bytes);
* any other BYTES tensor: a JSON list of UTF-8 strings, nested in the tensor's shape like numeric tensors;
  only single-element BYTES tensors may hold bytes that are not UTF-8.

A handler's answer body becomes an output tensor: JSON booleans / integers / numbers, alone or as a regular
(rectangular) nested list, give a BOOL / INT64 / FP64 tensor with that nesting as its shape (a scalar has
shape [1], an empty list is FP64 with shape [0]); anything else gives a BYTES tensor of shape [1] holding the
body bytes unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from server.errors import BadRequest
from server.oip.tensors import InferRequest, Tensor, bytes_array
from server.runtime.messages import InputItem, Request, Response


def to_handler_request(tensor: Tensor, request_id: str) -> Request:
    """The runtime Request that hands one input tensor to the handler as input `data`."""
    import numpy as np  # (imported when the protocol is first used, see tensors.datatypes)

    if tensor.datatype == "BYTES" and tensor.data.size == 1:
        value, content_type = bytes(tensor.data.ravel()[0]), ""
    elif tensor.datatype == "BYTES":
        strings = np.empty(tensor.data.size, dtype=object)
        for i, item in enumerate(tensor.data.ravel(order="C")):
            try:
                strings[i] = bytes(item).decode("utf-8")
            except UnicodeDecodeError as e:
                raise BadRequest(
                    f"Input '{tensor.name}': element {i} of a BYTES tensor with {tensor.data.size} elements is "
                    "not valid UTF-8; only single-element BYTES tensors may hold binary data."
                ) from e
        value, content_type = _json(strings.reshape(tensor.data.shape).tolist()), "application/json"
    else:
        value, content_type = _json(tensor.data.tolist()), "application/json"
    return Request(
        request_id=request_id,
        headers=[("explain", "False"), ("oip_tensor", tensor.name)],
        inputs=[InputItem(name="data", content_type=content_type, value=value)],
    )


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _nested_shape(value: Any) -> list[int] | None:
    """The shape of a regular nested list ([] for a scalar), or None when it is ragged."""
    if not isinstance(value, list):
        return []
    if not value:
        return [0]
    first = _nested_shape(value[0])
    if first is None:
        return None
    for item in value[1:]:
        if _nested_shape(item) != first:
            return None
    return [len(value), *first]


def _flatten(value: Any, out: list[Any]) -> None:
    if isinstance(value, list):
        for item in value:
            _flatten(item, out)
    else:
        out.append(value)


def _numeric(name: str, value: Any) -> Tensor | None:
    """A BOOL/INT64/FP64 tensor for JSON numbers or a regular nested list of them, else None."""
    import numpy as np

    shape = _nested_shape(value)
    if shape is None:
        return None
    flat: list[Any] = []
    _flatten(value, flat)
    kinds = {type(v) for v in flat}
    if kinds == {bool}:
        datatype = "BOOL"
    elif kinds == {int}:
        datatype = "INT64"
    elif kinds <= {int, float}:  # any float, or an empty list
        datatype = "FP64"
    else:
        return None
    try:
        data = np.array(flat, dtype={"BOOL": np.bool_, "INT64": np.int64, "FP64": np.float64}[datatype])
    except OverflowError:  # an integer beyond INT64 (all integers) or beyond float range
        return None
    shape = shape or [1]
    return Tensor(name=name, datatype=datatype, shape=shape, data=data.reshape(shape))


def to_output_tensor(name: str, response: Response) -> Tensor:
    """The output tensor for a handler's answer (see the module docstring for the mapping)."""
    body = bytes(response.body)
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        tensor = None
    else:
        try:
            tensor = _numeric(name, value)
        except RecursionError:  # nested deeper than we walk
            tensor = None
    if tensor is not None:
        return tensor
    return Tensor(name=name, datatype="BYTES", shape=[1], data=bytes_array([body], [1]))


def output_names(request: InferRequest) -> list[str]:
    """Each input's output name: the requested output names when there are exactly as many as inputs."""
    if request.outputs and len(request.outputs) == len(request.inputs):
        return [output.name for output in request.outputs]
    return [tensor.name for tensor in request.inputs]
