from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as httpclient

from server.errors import BadRequest
from server.oip.rest import HEADER_LENGTH, parse_infer_request, render_infer_response
from server.oip.tensors import InferRequest, InferResponse, RequestedOutput, Tensor
from tests.server.oip.samples import ALL, BINARY_BYTES, SAMPLES, assert_same

Client = httpclient.InferenceServerClient


def client_body(arrays: dict[str, np.ndarray], binary: bool, **kwargs) -> tuple[bytes, str | None]:
    """A request body exactly as tritonclient.http builds it, and its header length (None: plain JSON)."""
    inputs = []
    for name, arr in arrays.items():
        inp = httpclient.InferInput(name, list(arr.shape), datatype_of(arr))
        inputs.append(inp.set_data_from_numpy(arr, binary_data=binary))
    body, length = Client.generate_request_body(inputs, **kwargs)
    return body, None if length is None else str(length)


def datatype_of(arr: np.ndarray) -> str:
    return next(name for name, sample in SAMPLES.items() if sample.dtype == arr.dtype)


def read_back(body: bytes, headers: dict[str, str]) -> httpclient.InferResult:
    length = headers.get(HEADER_LENGTH)
    return Client.parse_response_body(body, header_length=None if length is None else int(length))


def echo(request: InferRequest) -> InferResponse:
    outputs = [Tensor(f"out_{t.name}", t.datatype, t.shape, t.data) for t in request.inputs]
    return InferResponse("m", "1", request.id, outputs)


def as_client_bytes(arr: np.ndarray) -> np.ndarray:
    """What tritonclient reads for BYTES sent as JSON: the strings, decoded."""
    return np.array([v.decode() for v in arr.ravel()], dtype=object).reshape(arr.shape)


@pytest.mark.parametrize("datatype", ALL)
def test_json_round_trip_through_tritonclient(datatype: str) -> None:
    arr = SAMPLES[datatype]
    body, length = client_body(
        {"in": arr}, binary=False, outputs=[httpclient.InferRequestedOutput("out_in", binary_data=False)],
        request_id="r-1",
    )  # fmt: skip
    assert length is None
    request = parse_infer_request("m", "1", body, None)
    assert (request.model_name, request.model_version, request.id) == ("m", "1", "r-1")
    assert [(t.name, t.datatype, t.shape, t.parameters) for t in request.inputs] == [("in", datatype, [2, 3], {})]
    assert_same(request.inputs[0].data, arr)
    assert request.outputs == [RequestedOutput("out_in", {"binary_data": False})]

    payload, headers = render_infer_response(echo(request), request)
    assert headers == {"Content-Type": "application/json"}
    doc = json.loads(payload)
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("m", "1", "r-1")
    assert doc["outputs"][0]["shape"] == [2, 3] and len(doc["outputs"][0]["data"]) == 6  # flattened
    result = read_back(payload, headers).as_numpy("out_in")
    expected = as_client_bytes(arr) if datatype == "BYTES" else arr
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == expected.dtype


@pytest.mark.parametrize("datatype", ALL)
def test_binary_round_trip_through_tritonclient(datatype: str) -> None:
    arr = SAMPLES[datatype] if datatype != "BYTES" else BINARY_BYTES
    body, length = client_body({"in": arr}, binary=True)  # no outputs: binary_data_output = true
    assert length is not None
    request = parse_infer_request("m", None, body, length)
    assert request.parameters == {"binary_data_output": True}
    assert request.inputs[0].parameters == {}  # binary_data_size is transport only
    assert_same(request.inputs[0].data, arr)

    payload, headers = render_infer_response(echo(request), request)
    assert headers["Content-Type"] == "application/octet-stream"
    header = json.loads(payload[: int(headers[HEADER_LENGTH])])
    assert "data" not in header["outputs"][0]
    assert header["outputs"][0]["parameters"] == {"binary_data_size": len(payload) - int(headers[HEADER_LENGTH])}
    assert_same(read_back(payload, headers).as_numpy("out_in"), arr)


def test_nested_json_data_and_mixed_binary_and_json_inputs() -> None:
    a, b = SAMPLES["FP32"], SAMPLES["BYTES"]
    inputs = [
        httpclient.InferInput("a", [2, 3], "FP32").set_data_from_numpy(a, binary_data=True),
        httpclient.InferInput("b", [2, 3], "BYTES").set_data_from_numpy(b, binary_data=False),
        httpclient.InferInput("c", [2, 3], "INT64").set_data_from_numpy(SAMPLES["INT64"], binary_data=True),
    ]
    body, length = Client.generate_request_body(inputs)
    request = parse_infer_request("m", None, body, str(length))
    for tensor, expected in zip(request.inputs, (a, b, SAMPLES["INT64"]), strict=True):
        assert_same(tensor.data, expected)
    nested = json.dumps({"inputs": [{"name": "n", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}]})
    assert parse_infer_request("m", None, nested.encode(), None).inputs[0].data.tolist() == [[1, 2], [3, 4]]


def test_per_output_binary_flags_from_tritonclient() -> None:
    arr = SAMPLES["INT16"]
    outputs = [
        httpclient.InferRequestedOutput("out_x", binary_data=False),
        httpclient.InferRequestedOutput("out_y", binary_data=True),
    ]
    body, length = client_body({"x": arr, "y": arr, "z": arr}, binary=True, outputs=outputs)
    request = parse_infer_request("m", None, body, length)
    assert request.parameters == {}  # outputs listed: tritonclient sends no binary_data_output
    payload, headers = render_infer_response(echo(request), request)
    header = json.loads(payload[: int(headers[HEADER_LENGTH])])
    kinds = {o["name"]: ("data" in o, o.get("parameters")) for o in header["outputs"]}
    assert kinds == {"out_x": (True, None), "out_y": (False, {"binary_data_size": 12}), "out_z": (True, None)}
    result = read_back(payload, headers)
    for name in ("out_x", "out_y", "out_z"):
        assert_same(result.as_numpy(name), arr)


def test_per_output_binary_flag_wins_over_binary_data_output() -> None:
    doc = {
        "inputs": [{"name": n, "shape": [1], "datatype": "INT32", "data": [1]} for n in ("x", "y")],
        "outputs": [{"name": "out_x", "parameters": {"binary_data": False}}],
        "parameters": {"binary_data_output": True},
    }
    request = parse_infer_request("m", None, json.dumps(doc).encode(), None)
    payload, headers = render_infer_response(echo(request), request)
    header = json.loads(payload[: int(headers[HEADER_LENGTH])])
    assert [("data" in o, o.get("parameters")) for o in header["outputs"]] == [(True, None), (False, {
        "binary_data_size": 4})]  # fmt: skip
    assert payload[int(headers[HEADER_LENGTH]) :] == b"\x01\0\0\0"
    assert read_back(payload, headers).as_numpy("out_y").tolist() == [1]
    request.parameters = {}
    assert render_infer_response(echo(request), request)[1] == {"Content-Type": "application/json"}


def test_non_utf8_bytes_output_goes_binary_even_in_a_json_reply() -> None:
    request = InferRequest("m", None, None, [], [], {})
    response = InferResponse("m", None, None, [
        Tensor("text", "BYTES", [1], np.array([b"ok"], dtype=object)),
        Tensor("blob", "BYTES", [2, 2], BINARY_BYTES, {"note": "x"}),
    ])  # fmt: skip
    payload, headers = render_infer_response(response, request)
    length = int(headers[HEADER_LENGTH])
    assert json.loads(payload[:length]) == {"model_name": "m", "outputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["ok"]},
        {"name": "blob", "datatype": "BYTES", "shape": [2, 2], "parameters": {"note": "x", "binary_data_size": 24}},
    ]}  # fmt: skip
    result = read_back(payload, headers)
    assert_same(result.as_numpy("blob"), BINARY_BYTES)
    assert result.as_numpy("text").tolist() == ["ok"]


def test_json_reply_shape_and_parameters() -> None:
    request = InferRequest("m", None, None, [], [], {})
    response = InferResponse("m", "2", "abc", [
        Tensor("b", "BOOL", [2], np.array([True, False])), Tensor("f", "FP64", [1], np.array([float("nan")]))
    ], {"k": 1})  # fmt: skip
    payload, headers = render_infer_response(response, request)
    assert headers == {"Content-Type": "application/json"}
    assert payload == (
        b'{"model_name":"m","model_version":"2","id":"abc","parameters":{"k":1},"outputs":['
        b'{"name":"b","datatype":"BOOL","shape":[2],"data":[true,false]},'
        b'{"name":"f","datatype":"FP64","shape":[1],"data":[NaN]}]}'
    )
    assert np.isnan(read_back(payload, headers).as_numpy("f")[0])


def raw_body(header: dict, tail: bytes = b"") -> tuple[bytes, str]:
    head = json.dumps(header).encode()
    return head + tail, str(len(head))


def inp(**fields) -> dict:
    return {"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", **fields}]}


BIN2 = {"parameters": {"binary_data_size": 8}}
ERRORS = [
    (b"", None, r"^The inference request body is empty; expected a JSON object with 'inputs'\.$"),
    (b"{nope", None, r"^The inference request is not valid JSON: Expecting property name"),
    (b"\xff\xfe{", None, r"^The inference request is not valid JSON"),
    (b"[1, 2]", None, r"^The inference request must be a JSON object, got list\.$"),
    (b"{}", None, r"^The inference request must have 'inputs': a non-empty list of tensors\.$"),
    (b'{"inputs": []}', None, r"must have 'inputs': a non-empty list"),
    (b'{"inputs": {"name": "x"}}', None, r"must have 'inputs': a non-empty list"),
    (b'{"inputs": [3]}', None, r"^inputs\[0\] must be a JSON object\.$"),
    (b'{"inputs": [{"shape": [1]}]}', None, r"^inputs\[0\]: 'name' must be a non-empty string\.$"),
    (b'{"inputs": [{"name": "x", "shape": [1], "data": [1]}]}', None, r"^Input 'x': 'datatype' is required\.$"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}', None, r"^Input 'x': 'shape' is required\.$"),
    (json.dumps(inp()).encode(), None, r"^Input 'x' has no 'data' and no parameters\.binary_data_size\.$"),
    (json.dumps(inp(data=[1, 2], parameters=[1])).encode(), None, r"^Input 'x': 'parameters' must be a JSON object"),
    (json.dumps({**inp(data=[1, 2]), "id": 5}).encode(), None, r"^'id' must be a string, got int\.$"),
    (json.dumps({**inp(data=[1, 2]), "parameters": "x"}).encode(), None, r"^The request: 'parameters' must be"),
    (json.dumps({**inp(data=[1, 2]), "outputs": {}}).encode(), None, r"^'outputs' must be a list, got dict\.$"),
    (json.dumps({**inp(data=[1, 2]), "outputs": ["y"]}).encode(), None, r"^outputs\[0\] must be a JSON object\.$"),
    (json.dumps({**inp(data=[1, 2]), "outputs": [{}]}).encode(), None, r"^outputs\[0\]: 'name' must be a non-empty"),
    (json.dumps({**inp(data=[1, 2]), "outputs": [{"name": "y"}, {"name": "y"}]}).encode(), None,
     r"^Output 'y' is requested more than once\.$"),
    (json.dumps({**inp(data=[1, 2]), "outputs": [{"name": "y", "parameters": {"shared_memory_region": "r"}}]})
     .encode(), None, r"^Output 'y': shared memory is not supported\.$"),
    (json.dumps(inp(parameters={"shared_memory_region": "r"})).encode(), None,
     r"^Input 'x': shared memory is not supported\.$"),
    (json.dumps({"inputs": inp(data=[1, 2])["inputs"] * 2}).encode(), None, r"^Input 'x' appears more than once\.$"),
    (json.dumps(inp(data=[1, 2, 3])).encode(), None, r"^Input 'x': shape \[2\] needs 2 values, got 3\.$"),
    (json.dumps(inp(data=[1, 2], datatype="BF16")).encode(), None, r"^Input 'x': unsupported datatype 'BF16'"),
    (json.dumps(inp(**BIN2)).encode(), None, r"^Input 'x' has parameters\.binary_data_size but the request has no "
     r"Inference-Header-Content-Length header\.$"),
]  # fmt: skip
RAW_ERRORS = [
    (*raw_body(inp(**BIN2), b"\0" * 8), "abc", r"^Inference-Header-Content-Length must be a non-negative integer, "
     r"got 'abc'\.$"),
    (*raw_body(inp(**BIN2), b"\0" * 8), "-3", r"must be a non-negative integer, got '-3'"),
    (b"{}", None, "99", r"^Inference-Header-Content-Length is 99 but the request body has only 2 bytes\.$"),
    (*raw_body(inp(data=[1, 2], **BIN2), b"\0" * 8), None,
     r"^Input 'x' has both 'data' and parameters\.binary_data_size; send one\.$"),
    (*raw_body(inp(parameters={"binary_data_size": -1})), None,
     r"^Input 'x': binary_data_size must be a non-negative integer, got -1\.$"),
    (*raw_body(inp(parameters={"binary_data_size": "8"})), None, r"binary_data_size must be a non-negative integer"),
    (*raw_body(inp(**BIN2), b"\0" * 7), None,
     r"^Input 'x': binary_data_size 8 goes past the end of the body \(7 bytes of binary data remain\)\.$"),
    (*raw_body(inp(**BIN2), b"\0" * 9), None,
     r"^The inputs' binary_data_size values add up to 8 bytes but the body has 9 bytes after the JSON header\.$"),
    (*raw_body(inp(data=[1, 2]), b"\0"), None, r"add up to 0 bytes but the body has 1 bytes after the JSON header"),
    (*raw_body(inp(parameters={"binary_data_size": 4})), None, r"goes past the end of the body"),
    (*raw_body({"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 4}}]},
               b"\0" * 4), None, r"^Input 'x': INT32 shape \[2\] needs 8 bytes of raw data, got 4\.$"),
    (*raw_body({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]},
               b"\x09\0\0\0a"), None, r"^Input 's': BYTES element 0 declares 9 bytes but only 1 remain\.$"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "length", "message"), ERRORS)
def test_bad_json_requests_are_400(body: bytes, length: str | None, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        parse_infer_request("m", None, body, length)
    assert info.value.status == 400 and info.value.type == "BadRequestException"


@pytest.mark.parametrize(("body", "length", "override", "message"), RAW_ERRORS)
def test_bad_binary_requests_are_400(body: bytes, length: str, override: str | None, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        parse_infer_request("m", None, body, override or length)
    assert info.value.status == 400


def test_input_parameters_are_kept_but_binary_data_size_is_not() -> None:
    doc = {"inputs": [
        {"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"], "parameters": {"content_type": "str"}},
        {"name": "b", "shape": [1], "datatype": "INT8", "parameters": {"binary_data_size": 1, "k": 2}},
    ]}  # fmt: skip
    body, length = raw_body(doc, b"\x05")
    request = parse_infer_request("m", None, body, length)
    assert [(t.name, t.parameters, t.data.tolist()) for t in request.inputs] == [
        ("a", {"content_type": "str"}, [b"x"]), ("b", {"k": 2}, [5])
    ]  # fmt: skip
    assert doc["inputs"][1]["parameters"] == {"binary_data_size": 1, "k": 2}


def test_header_length_equal_to_the_body_is_a_json_request() -> None:
    body = json.dumps(inp(data=[1, 2])).encode()
    request = parse_infer_request("m", None, body, f" {len(body)} ")
    assert request.inputs[0].data.tolist() == [1, 2]
    assert (request.id, request.outputs, request.parameters) == (None, [], {})
