from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import _utils as triton_utils
from tritonclient.grpc import service_pb2 as triton_pb

from server.api.grpc.proto import open_inference_pb2 as pb
from server.errors import BadRequest
from server.oip.grpc_codec import CONTENTS_FIELD, request_from_proto, response_to_proto
from server.oip.tensors import InferResponse, RequestedOutput, Tensor
from tests.server.oip.samples import ALL, BINARY_BYTES, SAMPLES, assert_same


def ours(theirs: triton_pb.ModelInferRequest) -> pb.ModelInferRequest:
    """tritonclient's `inference` package message as ours: same wire format, other package."""
    return pb.ModelInferRequest.FromString(theirs.SerializeToString())


def client_request(arrays: dict[str, np.ndarray], **kwargs) -> triton_pb.ModelInferRequest:
    """A ModelInferRequest exactly as tritonclient.grpc builds it (always raw_input_contents)."""
    inputs = []
    for name, arr in arrays.items():
        dt = next(k for k, v in SAMPLES.items() if v.dtype == arr.dtype)
        inputs.append(grpcclient.InferInput(name, list(arr.shape), dt).set_data_from_numpy(arr))
    args = {
        "model_name": "m",
        "model_version": "",
        "request_id": "",
        "outputs": None,
        "sequence_id": 0,
        "sequence_start": False,
        "sequence_end": False,
        "priority": 0,
        "timeout": None,
        "parameters": None,
    }
    args.update(kwargs)
    return triton_utils._get_inference_request(inputs=inputs, **args)


def typed_request(name: str, datatype: str, arr: np.ndarray) -> triton_pb.ModelInferRequest:
    msg = triton_pb.ModelInferRequest(model_name="m")
    tensor = msg.inputs.add(name=name, datatype=datatype, shape=list(arr.shape))
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(arr.ravel().tolist())
    return msg


def theirs(msg: pb.ModelInferResponse) -> triton_pb.ModelInferResponse:
    return triton_pb.ModelInferResponse.FromString(msg.SerializeToString())


def echo(request) -> InferResponse:
    return InferResponse("m", "1", request.id, [Tensor(f"out_{t.name}", t.datatype, t.shape, t.data)
                                                for t in request.inputs])  # fmt: skip


@pytest.mark.parametrize("datatype", ALL)
def test_raw_round_trip_through_tritonclient(datatype: str) -> None:
    arr = SAMPLES[datatype] if datatype != "BYTES" else BINARY_BYTES
    request = request_from_proto(ours(client_request({"in": arr}, request_id="r-7", model_version="3")))
    assert (request.model_name, request.model_version, request.id) == ("m", "3", "r-7")
    assert [(t.name, t.datatype, t.shape) for t in request.inputs] == [("in", datatype, list(arr.shape))]
    assert_same(request.inputs[0].data, arr)

    reply = response_to_proto(echo(request), raw=True)
    assert not reply.outputs[0].HasField("contents")
    assert len(reply.raw_output_contents) == 1
    result = grpcclient.InferResult(theirs(reply))
    assert_same(result.as_numpy("out_in"), arr)
    assert (result.get_response().model_name, result.get_response().model_version) == ("m", "1")
    assert result.get_response().id == "r-7"


@pytest.mark.parametrize("datatype", ALL)
def test_typed_round_trip(datatype: str) -> None:
    arr = SAMPLES[datatype]
    request = request_from_proto(ours(typed_request("in", datatype, arr)))
    assert (request.model_version, request.id) == (None, None)
    assert_same(request.inputs[0].data, arr)

    reply = theirs(response_to_proto(echo(request), raw=False))
    assert len(reply.raw_output_contents) == 0
    output = reply.outputs[0]
    assert (output.name, output.datatype, list(output.shape)) == ("out_in", datatype, [2, 3])
    values = list(getattr(output.contents, CONTENTS_FIELD[datatype]))
    assert values == arr.ravel().tolist()
    populated = [f.name for f, _ in output.contents.ListFields()]
    assert populated == [CONTENTS_FIELD[datatype]]
    # (tritonclient's as_numpy cannot read typed contents: numeric ones it ignores, and bytes_contents fail
    # under numpy 2 with `np.array(..., copy=False)`; it always sends raw and so gets raw replies.)


def test_contents_fields_per_datatype() -> None:
    assert CONTENTS_FIELD == {
        "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
        "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
        "UINT64": "uint64_contents", "FP16": "fp32_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
        "BYTES": "bytes_contents",
    }  # fmt: skip


def test_several_raw_inputs_keep_their_order_and_parameters_are_read() -> None:
    outputs = [grpcclient.InferRequestedOutput("a_out")]
    msg = client_request({"a": SAMPLES["FP32"], "b": BINARY_BYTES, "c": SAMPLES["UINT64"]}, outputs=outputs,
                         sequence_id="seq", sequence_start=True, priority=3, timeout=1000,
                         parameters={"s": "x", "b": False, "i": -7, "f": 1.5})  # fmt: skip
    request = request_from_proto(ours(msg))
    for tensor, expected in zip(request.inputs, (SAMPLES["FP32"], BINARY_BYTES, SAMPLES["UINT64"]), strict=True):
        assert_same(tensor.data, expected)
    assert request.parameters == {
        "sequence_id": "seq",
        "sequence_start": True,
        "sequence_end": False,
        "priority": 3,
        "timeout": 1000,
        "s": "x",
        "b": False,
        "i": -7,
        "f": 1.5,
    }
    assert request.outputs == [RequestedOutput("a_out", {})]


def test_response_parameters_and_multiple_raw_outputs() -> None:
    response = InferResponse("m", None, None, [
        Tensor("x", "INT8", [3], np.array([-1, 0, 1], dtype=np.int8), {"unit": "cm", "n": 2, "ok": True}),
        Tensor("y", "BOOL", [1], np.array([True])),
    ], {"a": "b", "big": 2**70, "l": [1, 2]})  # fmt: skip
    reply = response_to_proto(response, raw=True)
    assert (reply.model_name, reply.model_version, reply.id) == ("m", "", "")
    assert list(reply.raw_output_contents) == [b"\xff\x00\x01", b"\x01"]
    params = {k: (v.WhichOneof("parameter_choice"), getattr(v, v.WhichOneof("parameter_choice")))
              for k, v in reply.parameters.items()}  # fmt: skip
    assert params == {"a": ("string_param", "b"), "big": ("string_param", str(2**70)), "l": ("string_param", "[1, 2]")}
    out = reply.outputs[0].parameters
    assert (out["unit"].string_param, out["n"].int64_param, out["ok"].bool_param) == ("cm", 2, True)
    result = grpcclient.InferResult(theirs(reply))
    assert result.as_numpy("x").tolist() == [-1, 0, 1] and result.as_numpy("y").tolist() == [True]


def test_typed_empty_tensor_needs_no_contents() -> None:
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="e", datatype="FP32", shape=[0, 4])
    assert request_from_proto(msg).inputs[0].data.shape == (0, 4)


def request_with(*inputs: dict, raw: list[bytes] | None = None, outputs: list[dict] | None = None):
    msg = pb.ModelInferRequest(model_name="m")
    for spec in inputs:
        item = msg.inputs.add(name=spec.get("name", "x"), datatype=spec.get("datatype", "INT32"),
                              shape=spec.get("shape", [2]))  # fmt: skip
        for field, values in spec.get("contents", {}).items():
            getattr(item.contents, field).extend(values)
        for key, value in spec.get("parameters", {}).items():
            item.parameters[key].string_param = value
    msg.raw_input_contents.extend(raw or [])
    for out in outputs or []:
        o = msg.outputs.add(name=out["name"])
        for key, value in out.get("parameters", {}).items():
            o.parameters[key].string_param = value
    return msg


INTS = {"int_contents": [1, 2]}
ERRORS = [
    (request_with(), r"^The inference request must have at least one input\.$"),
    (request_with({"name": "", "contents": INTS}), r"^Every input needs a non-empty 'name'\.$"),
    (request_with({"datatype": "BF16"}), r"^Input 'x': unsupported datatype 'BF16'"),
    (request_with({"datatype": ""}), r"^Input 'x': unsupported datatype ''"),
    (request_with({"shape": [-2]}), r"^Input 'x': shape must not have negative dimensions, got \[-2\]\.$"),
    (request_with({"contents": INTS}, {"contents": INTS}), r"^Input 'x' appears more than once\.$"),
    (request_with({"contents": {"int_contents": [1]}}),
     r"^Input 'x': shape \[2\] needs 2 values in contents\.int_contents, got 1\.$"),
    (request_with({}), r"^Input 'x': shape \[2\] needs 2 values in contents\.int_contents, got 0\.$"),
    (request_with({"datatype": "FP32", "contents": {"fp64_contents": [1.0, 2.0]}}),
     r"^Input 'x': FP32 values go in contents\.fp32_contents, got fp64_contents\.$"),
    (request_with({"contents": {**INTS, "int64_contents": [1, 2]}}),
     r"^Input 'x': INT32 values go in contents\.int_contents, got int64_contents\.$"),
    (request_with({"datatype": "INT8", "contents": {"int_contents": [1, 200]}}),
     r"^Input 'x': value 200 is out of range for INT8 \(\[-128, 127\]\)\.$"),
    (request_with({"datatype": "UINT16", "contents": {"uint_contents": [70000, 1]}}),
     r"^Input 'x': value 70000 is out of range for UINT16"),
    (request_with({"contents": INTS, "parameters": {"shared_memory_region": "r"}}),
     r"^Input 'x': shared memory is not supported\.$"),
    (request_with({"contents": INTS}, outputs=[{"name": ""}]), r"^Every requested output needs a non-empty 'name'\.$"),
    (request_with({"contents": INTS}, outputs=[{"name": "o"}, {"name": "o"}]),
     r"^Output 'o' is requested more than once\.$"),
    (request_with({"contents": INTS}, outputs=[{"name": "o", "parameters": {"shared_memory_region": "r"}}]),
     r"^Output 'o': shared memory is not supported\.$"),
    (request_with({}, {"name": "y"}, raw=[b"\0" * 8]),
     r"^raw_input_contents has 1 entries but the request has 2 inputs; send one entry per input, in input order\.$"),
    (request_with({"contents": INTS}, raw=[b"\0" * 8]),
     r"^Input 'x' has both contents \(int_contents\) and raw_input_contents; send one\.$"),
    (request_with({}, raw=[b"\0" * 7]), r"^Input 'x': INT32 shape \[2\] needs 8 bytes of raw data, got 7\.$"),
    (request_with({"datatype": "BOOL", "shape": [1]}, raw=[b"\x07"]), r"^Input 'x': BOOL raw data must hold only"),
    (request_with({"datatype": "BYTES", "shape": [2]}, raw=[b"\x01\0\0\0a"]),
     r"^Input 'x': shape needs 2 BYTES elements, the data holds 1\.$"),
]  # fmt: skip


@pytest.mark.parametrize(("msg", "message"), ERRORS)
def test_bad_requests_are_400(msg: pb.ModelInferRequest, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        request_from_proto(msg)
    assert info.value.status == 400
