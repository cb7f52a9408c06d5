from __future__ import annotations

import json

import numpy as np
import pytest

from server.errors import BadRequest
from server.handlers.service import decode_input
from server.oip.handler_rows import output_names, to_handler_request, to_output_tensor
from server.oip.tensors import InferRequest, RequestedOutput, Tensor, tensor_from_values
from server.runtime.messages import InputItem, Response
from tests.server.oip.samples import ALL, SAMPLES

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01"


def tensor(datatype: str, shape: list[int], values: object, name: str = "t") -> Tensor:
    return tensor_from_values(name, datatype, shape, values)


def test_numeric_tensor_goes_as_json_of_its_values_in_their_shape() -> None:
    request = to_handler_request(tensor("FP32", [2, 2], [1.5, 2, 3, 4], name="pixels"), "req-1")
    assert request.request_id == "req-1"
    assert request.headers == [("explain", "False"), ("oip_tensor", "pixels")]
    assert request.inputs == [InputItem("data", "application/json", b"[[1.5,2.0],[3.0,4.0]]")]


@pytest.mark.parametrize("datatype", [d for d in ALL if d != "BYTES"])
def test_every_numeric_datatype_reaches_the_handler_as_nested_python_values(datatype: str) -> None:
    arr = SAMPLES[datatype]
    item = to_handler_request(Tensor("t", datatype, [2, 3], arr), "r").inputs[0]
    assert item.content_type == "application/json"
    assert decode_input(item) == arr.tolist()  # the worker's own decoding (spec §6.2)


def test_bool_and_scalar_shapes() -> None:
    assert to_handler_request(tensor("BOOL", [1, 2], [True, False]), "r").inputs[0].value == b"[[true,false]]"
    assert to_handler_request(tensor("INT64", [], [7]), "r").inputs[0].value == b"7"
    assert to_handler_request(tensor("INT64", [0], []), "r").inputs[0].value == b"[]"


def test_single_element_bytes_tensor_goes_raw_with_no_content_type() -> None:
    for shape in ([1], [1, 1], []):
        item = to_handler_request(tensor("BYTES", shape, [JPEG]), "r").inputs[0]
        assert item == InputItem("data", "", JPEG)
        assert decode_input(item) == bytearray(JPEG)  # an image handler's row["data"]
    assert to_handler_request(tensor("BYTES", [1], ["caf\u00e9"]), "r").inputs[0].value == "caf\u00e9".encode()


def test_several_bytes_elements_go_as_a_json_list_of_strings_in_their_shape() -> None:
    item = to_handler_request(tensor("BYTES", [2], ["hello", "caf\u00e9"]), "r").inputs[0]
    assert item.content_type == "application/json"
    assert json.loads(item.value) == ["hello", "caf\u00e9"]
    assert decode_input(item) == ["hello", "caf\u00e9"]
    nested = to_handler_request(tensor("BYTES", [2, 2], ["a", "b", "c", "d"]), "r").inputs[0]
    assert json.loads(nested.value) == [["a", "b"], ["c", "d"]]
    empty = to_handler_request(tensor("BYTES", [0], []), "r").inputs[0]
    assert (empty.content_type, empty.value) == ("application/json", b"[]")


def test_binary_in_a_multi_element_bytes_tensor_is_400() -> None:
    with pytest.raises(BadRequest) as info:
        to_handler_request(tensor("BYTES", [3], ["ok", "fine", JPEG], name="images"), "r")
    assert info.value.status == 400
    assert info.value.message == (
        "Input 'images': element 2 of a BYTES tensor with 3 elements is not valid UTF-8; "
        "only single-element BYTES tensors may hold binary data."
    )


def answer(value: object) -> Response:
    """A handler's answer as TorchServe serializes it (spec §6.3): bytes raw, str UTF-8, else indented JSON."""
    if isinstance(value, bytes):
        body = value
    elif isinstance(value, str):
        body = value.encode()
    else:
        body = json.dumps(value, indent=2).encode()
    return Response(request_id="r", body=body)


@pytest.mark.parametrize(
    ("value", "datatype", "shape", "data"),
    [
        (3, "INT64", [1], [3]),
        (-2.5, "FP64", [1], [-2.5]),
        (True, "BOOL", [1], [True]),
        ([1, 2, 3], "INT64", [3], [1, 2, 3]),
        ([[1, 2], [3, 4], [5, 6]], "INT64", [3, 2], [[1, 2], [3, 4], [5, 6]]),
        ([[0.5, 1], [2, 3]], "FP64", [2, 2], [[0.5, 1.0], [2.0, 3.0]]),
        ([[True], [False]], "BOOL", [2, 1], [[True], [False]]),
        ([], "FP64", [0], []),
        ([[], []], "FP64", [2, 0], [[], []]),
        ([2**63 - 1, -(2**63)], "INT64", [2], [2**63 - 1, -(2**63)]),
        ([2**64, 0.5], "FP64", [2], [2.0**64, 0.5]),
    ],
)
def test_numeric_answers_become_numeric_tensors(value: object, datatype: str, shape: list[int], data: list) -> None:
    out = to_output_tensor("scores", answer(value))
    assert (out.name, out.datatype, out.shape) == ("scores", datatype, shape)
    assert out.data.shape == tuple(shape)
    assert out.data.dtype == {"BOOL": np.bool_, "INT64": np.int64, "FP64": np.float64}[datatype]
    assert out.data.tolist() == data


def test_nan_answer_is_fp64() -> None:
    out = to_output_tensor("x", Response("r", b"[NaN, 1]"))
    assert out.datatype == "FP64" and np.isnan(out.data[0])


@pytest.mark.parametrize(
    "value",
    [
        "positive",
        {"tabby": 0.27, "tiger_cat": 0.1},
        [1, [2, 3]],
        [[1, 2], [3]],
        [[1, 2], 3],
        [[1, 2], [3, [4]]],
        [[1, [2]], [3, 4]],
        [[[1], [2, 3]], [[1], [2, 3]]],
        [2**63],
        [1, "a"],
        [True, 1],
        [1, None],
        [{"a": 1}],
        [2**64],
        None,
        JPEG,
        b"not json {",
        b"",
        "caf\u00e9".encode("latin-1"),
    ],
)
def test_anything_else_becomes_a_one_element_bytes_tensor_holding_the_body(value: object) -> None:
    response = answer(value)
    out = to_output_tensor("label", response)
    assert (out.name, out.datatype, out.shape, out.parameters) == ("label", "BYTES", [1], {})
    assert out.data.dtype == object and out.data.shape == (1,)
    assert type(out.data[0]) is bytes and out.data[0] == response.body


def test_string_answer_keeps_its_json_text() -> None:
    assert to_output_tensor("x", Response("r", b'"hi"')).data.tolist() == [b'"hi"']
    assert to_output_tensor("x", Response("r", b"hi")).data.tolist() == [b"hi"]
    assert to_output_tensor("x", Response("r", bytearray(b"[1]"))).data.tolist() == [1]


def request(n_inputs: int, outputs: list[str]) -> InferRequest:
    inputs = [tensor("INT32", [1], [i], name=f"in{i}") for i in range(n_inputs)]
    return InferRequest("m", None, None, inputs, [RequestedOutput(o, {}) for o in outputs], {})


def test_output_names() -> None:
    assert output_names(request(2, [])) == ["in0", "in1"]
    assert output_names(request(2, ["a", "b"])) == ["a", "b"]
    assert output_names(request(2, ["a"])) == ["in0", "in1"]
    assert output_names(request(1, ["a", "b"])) == ["in0"]
