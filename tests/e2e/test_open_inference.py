"""The Open Inference Protocol (KServe v2) against a real `tsconsole serve` process, spoken by clients nobody
here wrote (tritonclient's http and grpc clients) and by stubs from our own .proto files; and the same
prediction through all four front doors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from server.api.grpc.proto import inference_pb2, inference_pb2_grpc, open_inference_pb2_grpc
from server.api.grpc.proto import open_inference_pb2 as oip
from tests.e2e.conftest import DIGITS, ForegroundServer, digits_archive, make_echo_store, make_handler_archive

NUMBERS_HANDLER = '''
def handle(data, context):
    """Doubles every number of its input (a nested list, or a numpy array under the kservev2 envelope)."""
    if data is None:
        return None

    def double(value):
        return [double(v) for v in value] if isinstance(value, list) else value * 2

    return [double(row.get("data")) for row in data]
'''
NUMBERS_CONFIG = """\
oip:
  platform: doubler
  inputs: [{name: INPUT0, datatype: FP32, shape: [-1, 3]}]
  outputs: [{name: OUTPUT0, datatype: FP64, shape: [-1, 3]}]
"""
DESCRIBED_HANDLER = '''
from ts.torch_handler.base_handler import BaseHandler


class Described(BaseHandler):
    """Declares its tensors through describe_handle (TorchServe's customized metadata)."""

    def initialize(self, context):
        self.context = context
        self.initialized = True

    def describe_handle(self):
        return {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1]}],
                "outputs": [{"name": "LABEL", "datatype": "BYTES", "shape": [1]}]}
'''
BROKEN_HANDLER = "raise RuntimeError('this model never loads')\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForegroundServer]:
    cwd = tmp_path_factory.mktemp("oip")
    store = cwd / "store"
    store.mkdir()
    digits_archive(store)
    make_echo_store(store)
    make_handler_archive(store, "numbers", NUMBERS_HANDLER, NUMBERS_CONFIG)
    make_handler_archive(store, "described", DESCRIBED_HANDLER)
    started = ForegroundServer(cwd, ["--model-store", "store", "--models", "all", "--ncs"])
    yield started
    assert started.stop() == 0


def http_client(server: ForegroundServer) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(server.inference.removeprefix("http://"))


def grpc_client(server: ForegroundServer) -> triton_grpc.InferenceServerClient:
    return triton_grpc.InferenceServerClient(server.urls["grpc_inference"])


MATRIX = np.array([[1.5, 2.0, -3.0], [4.0, 5.25, 6.0]], dtype=np.float32)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_health_metadata_and_infer(server: ForegroundServer, binary: bool) -> None:
    client = http_client(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("numbers") and client.is_model_ready("numbers", "1.0")
    assert client.get_server_metadata()["name"] == "tsconsole"
    metadata = client.get_model_metadata("numbers")
    assert metadata["versions"] == ["1.0"] and metadata["platform"] == "doubler"
    assert metadata["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 3]}]
    tensor = triton_http.InferInput("INPUT0", list(MATRIX.shape), "FP32")
    tensor.set_data_from_numpy(MATRIX, binary_data=binary)
    wanted = [triton_http.InferRequestedOutput("OUTPUT0", binary_data=binary)]
    result = client.infer("numbers", [tensor], outputs=wanted, request_id="r-1")
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), MATRIX * 2)
    assert result.get_response()["id"] == "r-1" and result.get_response()["model_version"] == "1.0"


def test_tritonclient_grpc_health_metadata_and_infer(server: ForegroundServer) -> None:
    client = grpc_client(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("numbers")
    assert client.get_server_metadata().name == "tsconsole"
    metadata = client.get_model_metadata("numbers", as_json=True)
    assert metadata["platform"] == "doubler" and metadata["outputs"][0]["name"] == "OUTPUT0"
    tensor = triton_grpc.InferInput("INPUT0", list(MATRIX.shape), "FP32")
    tensor.set_data_from_numpy(MATRIX)
    result = client.infer("numbers", [tensor], outputs=[triton_grpc.InferRequestedOutput("OUTPUT0")],
                          model_version="1.0")  # fmt: skip
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), MATRIX * 2)


def test_errors_reach_the_clients(server: ForegroundServer) -> None:
    tensor = triton_http.InferInput("INPUT0", [1], "FP32")
    tensor.set_data_from_numpy(np.ones(1, dtype=np.float32))
    with pytest.raises(InferenceServerException, match="Model not found: nope"):
        http_client(server).infer("nope", [tensor])
    gtensor = triton_grpc.InferInput("INPUT0", [1], "FP32")
    gtensor.set_data_from_numpy(np.ones(1, dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        grpc_client(server).infer("nope", [gtensor])
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    too_few = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}
    bad = httpx.post(f"{server.inference}/v2/models/numbers/infer", json=too_few)
    assert bad.status_code == 400 and "x" in bad.json()["error"]
    assert httpx.get(f"{server.inference}/v2/models/nope/ready").status_code == 404


def test_the_same_prediction_through_every_front_door(server: ForegroundServer) -> None:
    image = (DIGITS / "samples" / "digit_3_30.png").read_bytes()
    rest = json.loads(httpx.put(f"{server.inference}/predictions/digits", content=image, timeout=60).text)
    assert next(iter(rest)) == "3"
    with grpc.insecure_channel(server.urls["grpc_inference"]) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        torchserve_grpc = json.loads(stub.Predictions(
            inference_pb2.PredictionsRequest(model_name="digits", input={"data": image})).prediction)  # fmt: skip
    as_bytes = np.array([image], dtype=np.object_)
    http_input = triton_http.InferInput("image", [1], "BYTES")
    http_input.set_data_from_numpy(as_bytes)
    oip_rest = json.loads(http_client(server).infer("digits", [http_input]).as_numpy("image")[0])
    grpc_input = triton_grpc.InferInput("image", [1], "BYTES")
    grpc_input.set_data_from_numpy(as_bytes)
    oip_grpc = json.loads(grpc_client(server).infer("digits", [grpc_input]).as_numpy("image")[0])
    assert rest == torchserve_grpc == oip_rest == oip_grpc


def test_torchserves_package_name_and_typed_contents(server: ForegroundServer) -> None:
    with grpc.insecure_channel(server.urls["grpc_inference"]) as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(oip.ServerLiveRequest()).live
        assert stub.ServerMetadata(oip.ServerMetadataRequest()).name == "tsconsole"  # TorchServe: UNIMPLEMENTED
        assert stub.ModelReady(oip.ModelReadyRequest(name="echo")).ready
        tensor = oip.ModelInferRequest.InferInputTensor(
            name="x", datatype="INT32", shape=[3], contents=oip.InferTensorContents(int_contents=[1, 2, 3])
        )
        answer = stub.ModelInfer(oip.ModelInferRequest(model_name="numbers", id="7", inputs=[tensor]))
        assert answer.id == "7" and answer.model_name == "numbers"
        assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [("x", "INT64", [3])]
        assert list(answer.outputs[0].contents.int64_contents) == [2, 4, 6]
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelReady(oip.ModelReadyRequest(name="nope"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_rest_metadata_versions_and_methods(server: ForegroundServer) -> None:
    base = f"{server.inference}/v2"
    assert httpx.get(f"{base}/health/live").json() == {"live": True}
    assert httpx.get(base).json()["extensions"]
    assert httpx.get(f"{base}/models/numbers/versions/1.0").json()["name"] == "numbers"
    assert httpx.get(f"{base}/models/numbers/versions/9/ready").status_code == 404
    assert httpx.get(f"{base}/models/echo").json()["inputs"] == []  # nothing declared
    described = httpx.get(f"{base}/models/described").json()  # declared by the handler's describe_handle
    assert described["inputs"] == [{"name": "TEXT", "datatype": "BYTES", "shape": [1]}]
    assert described["outputs"][0]["name"] == "LABEL" and described["platform"] == "pytorch_torchserve"
    body = {"inputs": [{"name": "a", "shape": [2], "datatype": "INT64", "data": [5, 6]}]}
    answer = httpx.post(f"{base}/models/numbers/versions/1.0/infer", json=body).json()
    assert answer["outputs"] == [{"name": "a", "datatype": "INT64", "shape": [2], "data": [10, 12]}]
    assert httpx.get(f"{base}/models/numbers/infer").status_code == 405


def test_readiness_waits_for_every_model_and_kserve_envelopes_pass_through(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_handler_archive(store, "numbers", NUMBERS_HANDLER)
    make_handler_archive(store, "broken", BROKEN_HANDLER)
    started = ForegroundServer(
        tmp_path, ["--model-store", "store", "--models", "all", "--ncs"], config={"service_envelope": "kservev2"}
    )
    try:
        base = started.inference
        ping = httpx.get(f"{base}/ping")  # TorchServe says Healthy while it restarts (pytorch/serve#2099)
        assert (ping.status_code, ping.json()) == (500, {"status": "Unhealthy"})
        assert httpx.get(f"{base}/v2/health/ready").status_code == 503
        assert httpx.get(f"{base}/v2/models/broken/ready").json() == {"name": "broken", "ready": False}
        assert httpx.get(f"{base}/v2/models/numbers/ready").json() == {"name": "numbers", "ready": True}
        body = {"id": "i", "inputs": [{"name": "a", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]}]}
        answer = httpx.post(f"{base}/v2/models/numbers/infer", json=body).json()  # TorchServe's envelope answers
        assert answer["id"] == "i" and answer["outputs"][0]["data"] == [2, 4, 6, 8]
        assert answer["outputs"][0]["shape"] == [4]
    finally:
        assert started.stop() == 0
