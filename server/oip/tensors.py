"""Protocol-neutral Open Inference Protocol (KServe v2) tensor types, and the validation every front door shares.

A `Tensor` holds its values as a numpy array that already has the tensor's shape (BYTES: an object array of
`bytes`). `tensor_from_values` builds one from client-supplied values (JSON data, typed gRPC contents) and
raises `BadRequest` naming the input and the problem; `tensor_from_raw` does the same for the binary
encoding that REST's binary extension and gRPC's raw contents share (little-endian, row-major; BYTES as
4-byte little-endian lengths, each followed by its bytes).
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.errors import BadRequest

if TYPE_CHECKING:
    import numpy as np

DATATYPE_NAMES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                  "FP64", "BYTES")  # fmt: skip


@functools.cache
def datatypes() -> dict[str, np.dtype]:
    """The numpy dtype of each KServe datatype (numpy is imported on first use: it costs the server's start
    a tenth of a second, and only this protocol needs it)."""
    import numpy as np

    kinds = (np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64,
             np.float16, np.float32, np.float64, object)  # fmt: skip
    return {name: np.dtype(kind) for name, kind in zip(DATATYPE_NAMES, kinds, strict=True)}


# Which Python value types each datatype accepts (bool is checked apart from int: JSON true is not 1).
_INTS = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_KIND_TEXT = (
    {"BOOL": "booleans", "BYTES": "strings"} | dict.fromkeys(_INTS, "integers") | dict.fromkeys(_FLOATS, "numbers")
)


@dataclass
class Tensor:
    """One named input or output tensor; `data` has exactly `shape`."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RequestedOutput:
    """An entry of the request's `outputs`: a name and its parameters (e.g. `binary_data`)."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    model_name: str
    model_version: str | None
    id: str | None
    inputs: list[Tensor]
    outputs: list[RequestedOutput]
    parameters: dict[str, Any]


@dataclass
class InferResponse:
    model_name: str
    model_version: str | None
    id: str | None
    outputs: list[Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)


def check_datatype(name: str, datatype: object) -> np.dtype:
    """The numpy dtype of a KServe datatype name, or BadRequest."""
    if not isinstance(datatype, str) or datatype not in DATATYPE_NAMES:
        raise BadRequest(
            f"Input '{name}': unsupported datatype {datatype!r}; expected one of {', '.join(DATATYPE_NAMES)}."
        )
    return datatypes()[datatype]


def check_shape(name: str, shape: object) -> list[int]:
    """The shape as a list of non-negative ints, or BadRequest."""
    if not isinstance(shape, (list, tuple)) or any(type(d) is not int for d in shape):
        raise BadRequest(f"Input '{name}': shape must be a list of integers, got {shape!r}.")
    if any(d < 0 for d in shape):
        raise BadRequest(f"Input '{name}': shape must not have negative dimensions, got {list(shape)}.")
    return list(shape)


def element_count(shape: list[int]) -> int:
    return math.prod(shape)


def _flatten(values: object, out: list[Any]) -> None:
    if isinstance(values, (list, tuple)):
        for v in values:
            _flatten(v, out)
    else:
        out.append(values)


def _check_kinds(name: str, datatype: str, flat: list[Any]) -> None:
    import numpy as np

    kinds = {type(v) for v in flat}
    if datatype == "BOOL":
        allowed: set[type] = {bool}
    elif datatype in _INTS:
        allowed = {int}
    elif datatype in _FLOATS:
        allowed = {int, float}
    else:
        allowed = {str, bytes}
    wrong = kinds - allowed
    if wrong:
        bad = next(v for v in flat if type(v) in wrong)
        raise BadRequest(
            f"Input '{name}': {datatype} data must hold only {_KIND_TEXT[datatype]}, got {type(bad).__name__} {bad!r}."
        )
    if datatype in _INTS and flat:
        info = np.iinfo(datatypes()[datatype])
        low, high = min(flat), max(flat)
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise BadRequest(f"Input '{name}': value {bad} is out of range for {datatype} ([{info.min}, {info.max}]).")


def bytes_array(elements: list[bytes], shape: list[int]) -> np.ndarray:
    """An object array of `bytes` with `shape` (numpy would otherwise build a fixed-width `S` array)."""
    import numpy as np

    arr = np.empty(len(elements), dtype=object)
    arr[:] = elements
    return arr.reshape(shape)


def tensor_from_values(name: str, datatype: str, shape: list[int], values: object) -> Tensor:
    """A Tensor from a flat or nested list of Python values (JSON `data`, typed gRPC contents).

    BYTES accepts `str` (stored as UTF-8) and `bytes`. Raises BadRequest for an unknown datatype, a bad
    shape, a count that is not the product of the shape, or values of the wrong kind or out of range.
    """
    import numpy as np

    dtype = check_datatype(name, datatype)
    shape = check_shape(name, shape)
    flat: list[Any] = []
    _flatten(values, flat)
    expected = element_count(shape)
    if len(flat) != expected:
        raise BadRequest(f"Input '{name}': shape {shape} needs {expected} values, got {len(flat)}.")
    _check_kinds(name, datatype, flat)
    if datatype == "BYTES":
        data = bytes_array([v.encode("utf-8") if isinstance(v, str) else v for v in flat], shape)
    else:
        try:
            with np.errstate(over="ignore"):  # FP16/FP32 overflow becomes inf, as a float cast does
                data = np.array(flat, dtype=dtype).reshape(shape)
        except OverflowError as e:  # an integer too large for any float
            raise BadRequest(f"Input '{name}': a value is too large for {datatype}.") from e
    return Tensor(name=name, datatype=datatype, shape=shape, data=data)


def deserialize_bytes(name: str, raw: bytes, count: int) -> list[bytes]:
    """Split BYTES raw data (4-byte little-endian length, then the bytes, per element) into `count` elements."""
    out: list[bytes] = []
    offset, size = 0, len(raw)
    while offset < size:
        if offset + 4 > size:
            raise BadRequest(f"Input '{name}': BYTES data ends inside an element's 4-byte length prefix.")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > size:
            raise BadRequest(
                f"Input '{name}': BYTES element {len(out)} declares {length} bytes but only {size - offset} remain."
            )
        out.append(bytes(raw[offset : offset + length]))
        offset += length
    if len(out) != count:
        raise BadRequest(f"Input '{name}': shape needs {count} BYTES elements, the data holds {len(out)}.")
    return out


def serialize_bytes(data: np.ndarray) -> bytes:
    """BYTES elements in row-major order, each as a 4-byte little-endian length and its bytes."""
    parts: list[bytes] = []
    for item in data.ravel(order="C"):
        b = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def tensor_from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> Tensor:
    """A Tensor from raw little-endian row-major bytes (REST binary extension, gRPC raw contents)."""
    import numpy as np

    dtype = check_datatype(name, datatype)
    shape = check_shape(name, shape)
    count = element_count(shape)
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, bytes_array(deserialize_bytes(name, raw, count), shape))
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"Input '{name}': {datatype} shape {shape} needs {count * dtype.itemsize} bytes of raw data, "
            f"got {len(raw)}."
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if octets.size and int(octets.max()) > 1:
            raise BadRequest(f"Input '{name}': BOOL raw data must hold only bytes 0 and 1.")
        data = octets.astype(np.bool_)
    else:
        data = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    return Tensor(name, datatype, shape, data.reshape(shape))


def to_raw(tensor: Tensor) -> bytes:
    """The raw binary encoding of a tensor's data (the inverse of `tensor_from_raw`)."""
    import numpy as np

    if tensor.datatype == "BYTES":
        return serialize_bytes(tensor.data)
    dtype = datatypes()[tensor.datatype]
    return np.ascontiguousarray(tensor.data, dtype=dtype.newbyteorder("<")).tobytes(order="C")
