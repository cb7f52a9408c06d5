from __future__ import annotations

import struct

import numpy as np
import pytest

from server.errors import BadRequest
from server.oip.tensors import Tensor, datatypes, tensor_from_raw, tensor_from_values, to_raw
from tests.server.oip.samples import ALL, BINARY_BYTES, SAMPLES, assert_same


def test_datatypes_map_every_kserve_name_to_its_numpy_dtype() -> None:
    assert {k: str(v) for k, v in datatypes().items()} == {
        "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
        "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
        "FP16": "float16", "FP32": "float32", "FP64": "float64", "BYTES": "object",
    }  # fmt: skip


@pytest.mark.parametrize("datatype", ALL)
def test_values_flat_or_nested_give_the_same_shaped_tensor(datatype: str) -> None:
    arr = SAMPLES[datatype]
    nested = tensor_from_values("x", datatype, [2, 3], arr.tolist())
    flat = tensor_from_values("x", datatype, [2, 3], arr.ravel().tolist())
    for tensor in (nested, flat):
        assert (tensor.name, tensor.datatype, tensor.shape, tensor.parameters) == ("x", datatype, [2, 3], {})
        assert_same(tensor.data, arr)


def test_bytes_values_take_str_as_utf8_and_bytes_as_they_are() -> None:
    tensor = tensor_from_values("t", "BYTES", [3], ["h\u00e9", b"\xff", ""])
    assert tensor.data.tolist() == [b"h\xc3\xa9", b"\xff", b""]
    assert tensor.data.dtype == object


def test_scalar_and_empty_values() -> None:
    assert tensor_from_values("s", "INT32", [], 5).data.tolist() == 5
    assert tensor_from_values("s", "FP32", [1], 5).data.tolist() == [5.0]
    empty = tensor_from_values("e", "INT64", [0, 3], [])
    assert empty.data.shape == (0, 3) and empty.data.dtype == np.int64


def test_fp16_overflow_becomes_infinity_like_a_float_cast() -> None:
    assert tensor_from_values("f", "FP16", [1], [1e6]).data.tolist() == [float("inf")]


def test_value_errors_are_400_and_name_the_input() -> None:
    with pytest.raises(BadRequest) as info:
        tensor_from_values("pixels", "INT8", [2], [1, 2, 3])
    assert info.value.status == 400
    assert info.value.message == "Input 'pixels': shape [2] needs 2 values, got 3."


@pytest.mark.parametrize(
    ("datatype", "shape", "values", "message"),
    [
        ("BF16", [1], [1.0], r"Input 'x': unsupported datatype 'BF16'; expected one of BOOL, UINT8"),
        ("fp32", [1], [1.0], r"unsupported datatype 'fp32'"),
        (None, [1], [1.0], r"unsupported datatype None"),
        ("FP32", [2, -1], [1.0], r"Input 'x': shape must not have negative dimensions, got \[2, -1\]"),
        ("FP32", [1.5], [1.0], r"Input 'x': shape must be a list of integers, got \[1.5\]"),
        ("FP32", [True], [1.0], r"shape must be a list of integers"),
        ("FP32", "3", [1.0], r"shape must be a list of integers, got '3'"),
        ("FP32", [2, 2], [1.0, 2.0, 3.0], r"shape \[2, 2\] needs 4 values, got 3"),
        ("FP32", [1], [[]], r"shape \[1\] needs 1 values, got 0"),
        ("INT32", [2], [1, True], r"INT32 data must hold only integers, got bool True"),
        ("INT32", [2], [1, 2.5], r"INT32 data must hold only integers, got float 2.5"),
        ("UINT8", [1], ["1"], r"UINT8 data must hold only integers, got str '1'"),
        ("BOOL", [2], [True, 1], r"BOOL data must hold only booleans, got int 1"),
        ("FP64", [2], [1.0, "nan"], r"FP64 data must hold only numbers, got str 'nan'"),
        ("FP64", [1], [False], r"FP64 data must hold only numbers, got bool False"),
        ("FP64", [1], [None], r"FP64 data must hold only numbers, got NoneType None"),
        ("BYTES", [2], ["a", 3], r"BYTES data must hold only strings, got int 3"),
        ("BYTES", [1], [{"a": 1}], r"BYTES data must hold only strings, got dict"),
        ("INT8", [2], [127, 128], r"Input 'x': value 128 is out of range for INT8 \(\[-128, 127\]\)"),
        ("INT8", [1], [-129], r"value -129 is out of range for INT8"),
        ("UINT8", [1], [-1], r"value -1 is out of range for UINT8 \(\[0, 255\]\)"),
        ("UINT16", [1], [65536], r"value 65536 is out of range for UINT16"),
        ("INT32", [1], [2**31], r"value 2147483648 is out of range for INT32"),
        ("UINT32", [1], [2**32], r"out of range for UINT32"),
        ("INT64", [1], [2**63], r"out of range for INT64"),
        ("UINT64", [1], [2**64], r"value 18446744073709551616 is out of range for UINT64"),
        ("FP64", [1], [10**400], r"Input 'x': a value is too large for FP64"),
    ],
)
def test_bad_values_raise_bad_request(datatype: object, shape: object, values: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        tensor_from_values("x", datatype, shape, values)  # type: ignore[arg-type]
    assert info.value.status == 400


@pytest.mark.parametrize("datatype", ALL)
def test_raw_round_trip(datatype: str) -> None:
    arr = SAMPLES[datatype]
    tensor = Tensor("x", datatype, [2, 3], arr)
    back = tensor_from_raw("x", datatype, [2, 3], to_raw(tensor))
    assert back.shape == [2, 3]
    assert_same(back.data, arr)


def test_raw_is_little_endian_row_major_and_bytes_are_length_prefixed() -> None:
    ints = Tensor("i", "INT32", [2, 2], np.array([[1, 2], [3, 256]], dtype=np.int32))
    assert to_raw(ints) == struct.pack("<4i", 1, 2, 3, 256)
    assert to_raw(Tensor("f", "FP16", [1], np.array([1.0], dtype=np.float16))) == b"\x00\x3c"
    assert tensor_from_raw("u", "UINT16", [2], b"\x01\x02\x03\x04").data.tolist() == [0x0201, 0x0403]
    strings = Tensor("s", "BYTES", [2, 2], BINARY_BYTES)
    raw = to_raw(strings)
    assert raw == b"\x04\0\0\0\xff\xd8\xff\xe0" + b"\x03\0\0\0\x00\x01\x00" + b"\0\0\0\0" + b"\x01\0\0\0\x80"
    assert_same(tensor_from_raw("s", "BYTES", [2, 2], raw).data, BINARY_BYTES)


def test_raw_empty_tensors() -> None:
    assert tensor_from_raw("e", "FP32", [0], b"").data.shape == (0,)
    assert tensor_from_raw("e", "BYTES", [2, 0], b"").data.shape == (2, 0)


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", [2], b"\0" * 7, r"Input 'x': FP32 shape \[2\] needs 8 bytes of raw data, got 7"),
        ("INT64", [1], b"\0" * 16, r"INT64 shape \[1\] needs 8 bytes of raw data, got 16"),
        ("BOOL", [2], b"\x01\x02", r"Input 'x': BOOL raw data must hold only bytes 0 and 1"),
        ("BYTES", [1], b"\x01\0\0", r"Input 'x': BYTES data ends inside an element's 4-byte length prefix"),
        ("BYTES", [1], b"\x05\0\0\0abc", r"Input 'x': BYTES element 0 declares 5 bytes but only 3 remain"),
        ("BYTES", [2], b"\x01\0\0\0a", r"Input 'x': shape needs 2 BYTES elements, the data holds 1"),
        ("BYTES", [1], b"\x01\0\0\0a\x01\0\0\0b", r"shape needs 1 BYTES elements, the data holds 2"),
        ("BF16", [1], b"\0\0", r"unsupported datatype 'BF16'"),
        ("FP32", [-1], b"", r"negative dimensions"),
    ],
)
def test_bad_raw_data_raises_bad_request(datatype: str, shape: list[int], raw: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        tensor_from_raw("x", datatype, shape, raw)
    assert info.value.status == 400
