"""TorchServe's gRPC front doors against a real `tsconsole serve` process, through stubs generated from our
.proto files: every rpc, their status codes, streaming, cancellation and deadlines, limits, the access log.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import empty_pb2

from server.api.grpc.proto import inference_pb2 as inference
from server.api.grpc.proto import inference_pb2_grpc, management_pb2_grpc
from server.api.grpc.proto import management_pb2 as management
from tests.e2e.conftest import (
    LAB_MAX_REQUEST,
    LAB_MAX_RESPONSE,
    ForegroundServer,
    make_echo_store,
    recorded,
    server_env,
    tsconsole,
    write_config,
)


@pytest.fixture(scope="module")
def channels(lab: ForegroundServer) -> Iterator[tuple[grpc.Channel, grpc.Channel]]:
    with (
        grpc.insecure_channel(lab.urls["grpc_inference"]) as infer,
        grpc.insecure_channel(lab.urls["grpc_management"]) as manage,
    ):
        yield infer, manage


@pytest.fixture
def infer(channels: tuple[grpc.Channel, grpc.Channel]) -> inference_pb2_grpc.InferenceAPIsServiceStub:
    return inference_pb2_grpc.InferenceAPIsServiceStub(channels[0])


@pytest.fixture
def manage(channels: tuple[grpc.Channel, grpc.Channel]) -> management_pb2_grpc.ManagementAPIsServiceStub:
    return management_pb2_grpc.ManagementAPIsServiceStub(channels[1])


def predict_request(model: str, version: str = "", **inputs: bytes) -> inference.PredictionsRequest:
    return inference.PredictionsRequest(model_name=model, model_version=version, input=inputs)


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_ping(infer) -> None:
    assert infer.Ping(empty_pb2.Empty()).health == '{\n  "status": "Healthy"\n}\n'


def test_predictions_inputs_reach_the_handler_as_bytes(infer, lab: ForegroundServer) -> None:
    answer = json.loads(infer.Predictions(predict_request("echo", data=b"hi", other=b"2")).prediction)
    assert answer["inputs"] == {"data": ["bytearray", "hi"], "other": ["bytearray", "2"]}
    assert answer["url_path"] is None and answer["explain"] is None  # no HTTP-style headers over gRPC
    versioned = json.loads(infer.Predictions(predict_request("echo", "1.0", data=b"x")).prediction)
    assert versioned["version"] == "1.0"
    same_over_rest = httpx.post(f"{lab.inference}/predictions/echo", files={"data": ("d", b"hi")}).json()
    assert same_over_rest["inputs"]["data"] == answer["inputs"]["data"]


@pytest.mark.parametrize(
    ("request_", "code", "details"),
    [
        (predict_request("", data=b"x"), grpc.StatusCode.INVALID_ARGUMENT, "Parameter model_name is required."),
        (predict_request("nope", data=b"x"), grpc.StatusCode.NOT_FOUND, "Model not found: nope"),
        (predict_request("echo", "9.9", data=b"x"), grpc.StatusCode.NOT_FOUND,
         "Model version: 9.9 does not exist for model: echo"),
        (predict_request("echo", fail=b"x"), grpc.StatusCode.UNAVAILABLE, "Prediction failed"),
    ],
)  # fmt: skip
def test_prediction_errors(infer, request_, code: grpc.StatusCode, details: str) -> None:
    error = rpc_error(lambda: infer.Predictions(request_))
    assert (error.code(), error.details()) == (code, details)


def test_message_limits_are_resource_exhausted(infer) -> None:
    error = rpc_error(lambda: infer.Predictions(predict_request("echo", data=b"x" * (LAB_MAX_REQUEST + 1))))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert json.loads(infer.Predictions(predict_request("echo", data=b"x" * 1000)).prediction)["batch"] == 1
    error = rpc_error(lambda: infer.Predictions(predict_request("echo", data=b"x" * LAB_MAX_RESPONSE)))  # echoed back
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_stream_predictions_sends_each_response_as_it_is_produced(infer, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    stream = infer.StreamPredictions(predict_request("stream", data=str(gate).encode()), timeout=60)
    first = next(stream)  # the handler waits for the gate after this one: it reached us while the handler ran
    assert first.prediction == b"hello"
    gate.touch()
    assert [m.prediction for m in stream] == [b"hello", b"hello", b"hello world "]


def test_a_stream_cancelled_midway_ends_and_the_server_serves_on(infer, lab: ForegroundServer, tmp_path: Path) -> None:
    stream = infer.StreamPredictions(predict_request("stream", data=str(tmp_path / "never").encode()), timeout=60)
    assert next(stream).prediction == b"hello"
    stream.cancel()  # the handler is still waiting for its gate
    with pytest.raises(grpc.RpcError) as caught:
        next(stream)
    assert caught.value.code() == grpc.StatusCode.CANCELLED
    log = lab.cwd / "logs" / "access_log.log"
    _wait_for(lambda: 'InferenceAPIsService/StreamPredictions HTTP/2.0" 1 ' in log.read_text())
    assert infer.Ping(empty_pb2.Empty()).health


def test_stream_predictions_of_a_model_that_does_not_stream_answers_once(infer) -> None:
    answers = list(infer.StreamPredictions(predict_request("echo", data=b"once"), timeout=30))
    assert len(answers) == 1 and json.loads(answers[0].prediction)["inputs"]["data"] == ["bytearray", "once"]
    error = rpc_error(lambda: list(infer.StreamPredictions(predict_request("nope"), timeout=30)))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_stream_predictions2_answers_in_order_with_errors_in_band(infer) -> None:
    requests = [
        inference.PredictionsRequest(model_name="echo", input={"data": b"one"}, sequence_id="seq-1"),
        inference.PredictionsRequest(model_name="nope", input={"data": b"two"}, sequence_id="seq-1"),
        inference.PredictionsRequest(model_name="echo", input={"data": b"three"}, sequence_id="seq-1"),
    ]
    answers = list(infer.StreamPredictions2(iter(requests), timeout=30))
    assert [a.sequence_id for a in answers] == ["seq-1"] * 3
    assert json.loads(answers[0].prediction)["inputs"]["data"] == ["bytearray", "one"]
    assert answers[1].HasField("status") and answers[1].status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert answers[1].status.message == "Model not found: nope"
    assert json.loads(answers[2].prediction)["inputs"]["data"] == ["bytearray", "three"]
    generated = list(infer.StreamPredictions2(iter([predict_request("echo", data=b"x")]), timeout=30))
    assert generated[0].sequence_id.startswith("ts-seq-")


def test_management_rpcs(manage, infer, lab: ForegroundServer) -> None:
    listed = json.loads(manage.ListModels(management.ListModelsRequest()).msg)
    assert [m["modelName"] for m in listed["models"]] == ["echo", "recorder", "stream"]  # limit 0 = unset = 100
    assert json.loads(manage.ListModels(management.ListModelsRequest(limit=1, next_page_token=1)).msg) == {
        "nextPageToken": "2",
        "models": [{"modelName": "recorder", "modelUrl": "recorder.mar"}],
    }
    described = json.loads(manage.DescribeModel(management.DescribeModelRequest(model_name="echo")).msg)
    rest = httpx.get(f"{lab.urls['management']}/models/echo").json()
    assert described[0]["modelName"] == "echo" and described[0].keys() == rest[0].keys()

    registered = manage.RegisterModel(
        management.RegisterModelRequest(url="echo.mar", model_name="echo2", initial_workers=1, synchronous=True)
    )
    assert registered.msg == 'Model "echo2" Version: 1.0 registered with 1 initial workers'
    assert json.loads(infer.Predictions(predict_request("echo2", data=b"x")).prediction)["version"] == "1.0"
    scaled = manage.ScaleWorker(management.ScaleWorkerRequest(model_name="echo2", min_worker=2, synchronous=True))
    assert scaled.msg == "Workers scaled to 2 for model: echo2"
    assert len(httpx.get(f"{lab.urls['management']}/models/echo2").json()[0]["workers"]) == 2
    unset = manage.ScaleWorker(management.ScaleWorkerRequest(model_name="echo2"))  # min 0 = unset = 1, async
    assert unset.msg == "Processing worker updates..."
    default = manage.SetDefault(management.SetDefaultRequest(model_name="echo2", model_version="1.0"))
    assert default.msg == 'Default version successfully updated for model "echo2" to "1.0"'
    gone = manage.UnregisterModel(management.UnregisterModelRequest(model_name="echo2"))
    assert gone.msg == 'Model "echo2" unregistered'
    assert httpx.get(f"{lab.urls['management']}/models/echo2").status_code == 404


@pytest.mark.parametrize(
    ("call", "code", "details"),
    [
        ("DescribeModel", grpc.StatusCode.NOT_FOUND, "Model not found: nope"),
        ("ScaleWorker", grpc.StatusCode.NOT_FOUND, "Model not found: nope"),
        ("SetDefault", grpc.StatusCode.NOT_FOUND, "Model not found: nope"),
        ("UnregisterModel", grpc.StatusCode.NOT_FOUND, "Model not found: nope"),
    ],
)
def test_management_not_found(manage, call: str, code: grpc.StatusCode, details: str) -> None:
    requests = {
        "DescribeModel": management.DescribeModelRequest(model_name="nope"),
        "ScaleWorker": management.ScaleWorkerRequest(model_name="nope", min_worker=1),
        "SetDefault": management.SetDefaultRequest(model_name="nope", model_version="1.0"),
        "UnregisterModel": management.UnregisterModelRequest(model_name="nope"),
    }
    error = rpc_error(lambda: getattr(manage, call)(requests[call]))
    assert (error.code(), error.details()) == (code, details)


def test_management_bad_input_and_conflicts(manage) -> None:
    error = rpc_error(lambda: manage.RegisterModel(management.RegisterModelRequest()))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Parameter url is required.")
    error = rpc_error(lambda: manage.ScaleWorker(management.ScaleWorkerRequest(model_name="echo", min_worker=3,
                                                                                max_worker=2)))  # fmt: skip
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                               "max_worker cannot be less than min_worker.")  # fmt: skip
    error = rpc_error(lambda: manage.RegisterModel(management.RegisterModelRequest(url="echo.mar", synchronous=True)))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "Model version 1.0 is already registered for model echo"


def test_a_request_cancelled_while_queued_never_reaches_the_handler(infer, lab: ForegroundServer) -> None:
    record = lab.cwd / "record.txt"
    busy = threading.Thread(target=lambda: infer.Predictions(predict_request("recorder", data=b"sleep:2:busy")))
    busy.start()
    _wait_for(lambda: "sleep:2:busy" in recorded(record))  # the only worker is busy for 2 s
    error = rpc_error(lambda: infer.Predictions(predict_request("recorder", data=b"deadline"), timeout=0.5))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    future = infer.Predictions.future(predict_request("recorder", data=b"cancelled"))
    time.sleep(0.2)
    assert future.cancel()
    with httpx.Client(timeout=0.5) as impatient, pytest.raises(httpx.TimeoutException):
        impatient.post(f"{lab.inference}/predictions/recorder", content=b"disconnected")
    busy.join()
    after = infer.Predictions(predict_request("recorder", data=b"after"), timeout=30).prediction
    assert after == b"after"
    assert recorded(record)[-2:] == ["sleep:2:busy", "after"]  # nothing cancelled ever reached the worker
    metrics = httpx.get(f"{lab.urls['metrics']}/metrics").text
    assert _sample(metrics, 'tsconsole_cancelled_requests{model_name="recorder"', 'stage="queued"') >= 3


def test_a_request_cancelled_in_flight_is_dropped_and_the_worker_serves_on(infer, lab: ForegroundServer) -> None:
    record = lab.cwd / "record.txt"
    error = rpc_error(lambda: infer.Predictions(predict_request("recorder", data=b"sleep:1:late"), timeout=0.4))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "sleep:1:late" in recorded(record)  # it was in flight
    assert infer.Predictions(predict_request("recorder", data=b"next"), timeout=30).prediction == b"next"
    metrics = httpx.get(f"{lab.urls['metrics']}/metrics").text
    assert _sample(metrics, 'tsconsole_cancelled_requests{model_name="recorder"', 'stage="in_flight"') >= 1


def test_every_call_is_in_the_access_log(infer, lab: ForegroundServer) -> None:
    infer.Ping(empty_pb2.Empty())
    rpc_error(lambda: infer.Predictions(predict_request("nope")))

    def lines() -> list[str]:
        return (lab.cwd / "logs" / "access_log.log").read_text().splitlines()

    _wait_for(lambda: any('Predictions HTTP/2.0" 5 ' in line for line in lines()))
    ping = [line for line in lines() if '"gRPC org.pytorch.serve.grpc.inference.InferenceAPIsService/Ping' in line]
    assert ping and ping[-1].split(" - ", 1)[1].startswith("/127.0.0.1:")
    assert ' HTTP/2.0" 0 ' in ping[-1]


def test_model_api_off_is_permission_denied(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_echo_store(store)
    server = ForegroundServer(tmp_path, ["--model-store", "store", "--models", "echo.mar", "--ncs"])
    try:
        with grpc.insecure_channel(server.urls["grpc_management"]) as channel:
            stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
            for call in (
                lambda: stub.RegisterModel(management.RegisterModelRequest(url="echo.mar")),
                lambda: stub.UnregisterModel(management.UnregisterModelRequest(model_name="echo")),
            ):
                error = rpc_error(call)
                assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, "Model API disabled")
            assert json.loads(stub.DescribeModel(management.DescribeModelRequest(model_name="echo")).msg)
    finally:
        assert server.stop() == 0


def _sample(metrics: str, *parts: str) -> float:
    for line in metrics.splitlines():
        if all(part in line for part in parts):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting")
        time.sleep(0.05)


def test_a_grpc_port_in_use_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    urls = write_config(tmp_path, model_store=str(tmp_path / "store"))
    (tmp_path / "store").mkdir()
    host, port = urls["grpc_management"].rsplit(":", 1)
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        done = tsconsole("serve", "--ncs", cwd=tmp_path, env=server_env(tmp_path), timeout=120)
    assert done.returncode != 0
    assert f"gRPC management: cannot listen on {urls['grpc_management']}" in done.stdout + done.stderr
