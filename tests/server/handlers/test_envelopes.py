"""The KServe envelopes (spec §6.7, ``service_envelope=kserve`` / ``kservev2``) around real handlers run by
`HandlerService`, as the worker runs them: load with ``envelope=...``, then ``predict`` batches."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from server.handlers.service import HandlerService
from server.runtime.messages import Reply
from tests.server.handlers.conftest import TINY_NET, batch, load_msg, make_model_dir, req

HANDLERS = """
    import numpy as np
    import torch

    SEEN = {}


    def record(data, context):
        if data is None:
            return None
        SEEN["data"] = data
        return [f"out{i}" for i in range(len(data))]


    def echo(data, context):
        if data is None:
            return None
        SEEN["data"] = data
        return [item["data"] for item in data]


    def typed(data, context):
        return data and [
            np.array([True, False]),
            np.array([[1, 2], [3, 4]], dtype=np.uint8),
            np.array([-1], dtype=np.int16),
            torch.tensor([[1.5], [2.5]]),
            np.array([0.5], dtype=np.float16),
            [1, 2],
            [0.25],
            np.array(["a", "bc"]),
            np.array([{"k": 1}], dtype=object),
        ]


    def too_many(data, context):
        return data and [1] * (len(data) + 1)


    def complex_output(data, context):
        return data and [np.array([1j])]
    """

TINY_HANDLER = """
    import torch

    from server.handlers.base_handler import BaseHandler


    class TinyV2(BaseHandler):
        def preprocess(self, data):
            return torch.tensor([row["data"] for row in data], dtype=torch.float32)

        def postprocess(self, data):
            return [data]
    """

MODEL = {"modelName": "tiny", "modelVersion": "2.0"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("envelopes"), MODEL, {"kfns.py": HANDLERS})


def service(model_dir: Path, fn: str, envelope: str) -> HandlerService:
    return HandlerService.load(load_msg(model_dir, f"kfns:{fn}", envelope=envelope, batch_size=1))


def seen() -> Any:
    return sys.modules["kfns"].SEEN["data"]


def json_req(rid: str, body: Any, headers: list[tuple[str, str]] | None = None) -> Any:
    return req(rid, ("body", "application/json", json.dumps(body).encode()), headers=headers)


def body_of(reply: Reply) -> Any:
    assert (reply.code, reply.message) == (200, "Prediction success")
    assert len(reply.responses) == 1
    return json.loads(reply.responses[0].body)


def assert_batch_failed(reply: Reply) -> None:
    assert (reply.code, reply.message, reply.responses) == (503, "Prediction failed", [])


# -- kserve (v1) ------------------------------------------------------------------------------------------


def test_v1_predictions(model_dir: Path) -> None:
    svc = service(model_dir, "record", "kserve")
    reply = svc.predict(batch(json_req("r1", {"instances": [[1, 2], {"x": 3}]})))
    assert seen() == [[1, 2], {"x": 3}]
    assert body_of(reply) == {"predictions": ["out0", "out1"]}


def test_v1_explanations_only_for_explain_true(model_dir: Path) -> None:
    svc = service(model_dir, "record", "kserve")
    explained = svc.predict(batch(json_req("r1", {"instances": ["a"]}, headers=[("explain", "True")])))
    assert body_of(explained) == {"explanations": ["out0"]}
    lowercase = svc.predict(batch(json_req("r2", {"instances": ["a"]}, headers=[("explain", "true")])))
    assert body_of(lowercase) == {"predictions": ["out0"]}


def test_v1_body_as_bytes_and_as_data_field(model_dir: Path) -> None:
    svc = service(model_dir, "record", "kserve")
    raw = json.dumps({"instances": [7]}).encode()
    assert body_of(svc.predict(batch(req("r1", ("body", "application/octet-stream", raw))))) == {
        "predictions": ["out0"]
    }
    assert seen() == [7]
    svc.predict(batch(req("r2", ("data", "application/json", b'{"instances": [8, 9]}'))))
    assert seen() == [8, 9]


def test_v1_b64_instances_reach_the_handler_as_sent(model_dir: Path) -> None:
    # TorchServe 0.12's kserve envelope does not base64-decode (unlike the json envelope)
    svc = service(model_dir, "record", "kserve")
    instances = [{"b64": "aGk="}, {"img": {"b64": "eW8="}, "k": 1}]
    assert body_of(svc.predict(batch(json_req("r1", {"instances": instances})))) == {"predictions": ["out0", "out1"]}
    assert seen() == instances


def test_v1_without_instances_gives_the_handler_none(model_dir: Path) -> None:
    svc = service(model_dir, "record", "kserve")
    reply = svc.predict(batch(json_req("r1", {"inputs": [1]})))
    assert (reply.code, reply.message) == (503, "Invalid model predict output")  # record(None) returns None


def test_v1_answers_one_response_so_batches_of_two_fail(model_dir: Path) -> None:
    svc = service(model_dir, "record", "kserve")
    reply = svc.predict(batch(json_req("r1", {"instances": [1]}), json_req("r2", {"instances": [2]})))
    assert seen() == [1]  # only the first request is read
    assert (reply.code, reply.message) == (503, "number of batch response mismatched")


# -- kservev2 ---------------------------------------------------------------------------------------------


def test_v2_numeric_input_is_reshaped(model_dir: Path) -> None:
    svc = service(model_dir, "echo", "kservev2")
    body = {
        "id": "req-7",
        "inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "INT64", "data": [1, 2, 3, 4, 5, 6]},
            {"name": "y", "shape": [1, 2], "datatype": "FP32", "data": [[1.5, 2.5]]},
        ],
    }
    reply = svc.predict(batch(json_req("r1", body)))
    assert seen() == [
        {"name": "x", "shape": [2, 3], "datatype": "INT64", "data": [[1, 2, 3], [4, 5, 6]]},
        {"name": "y", "shape": [1, 2], "datatype": "FP32", "data": [[1.5, 2.5]]},
    ]
    assert body_of(reply) == {
        "id": "req-7",
        "model_name": "tiny",
        "model_version": "2.0",
        "outputs": [
            {"name": "x", "datatype": "INT64", "data": [1, 2, 3, 4, 5, 6], "shape": [6]},
            {"name": "y", "datatype": "FP64", "data": [1.5, 2.5], "shape": [2]},
        ],
    }


def test_v2_bytes_input_uses_the_first_element(model_dir: Path) -> None:
    svc = service(model_dir, "echo", "kservev2")
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hello", "ignored"]}]}
    raw = json.dumps(body).encode()
    reply = svc.predict(batch(req("r1", ("body", "application/octet-stream", raw))))
    assert seen() == [{"name": "text", "shape": [2], "datatype": "BYTES", "data": "hello"}]
    assert body_of(reply)["outputs"] == [{"name": "text", "datatype": "BYTES", "data": ["hello"], "shape": [1]}]


def test_v2_output_datatypes_and_shapes(model_dir: Path) -> None:
    svc = service(model_dir, "typed", "kservev2")
    inputs = [{"name": f"i{n}", "shape": [1], "datatype": "INT32", "data": [n]} for n in range(9)]
    outputs = body_of(svc.predict(batch(json_req("r1", {"id": "t", "inputs": inputs}))))["outputs"]
    assert outputs == [
        {"name": "i0", "datatype": "BOOL", "data": [True, False], "shape": [2]},
        {"name": "i1", "datatype": "UINT8", "data": [1, 2, 3, 4], "shape": [4]},
        {"name": "i2", "datatype": "INT16", "data": [-1], "shape": [1]},
        {"name": "i3", "datatype": "FP32", "data": [1.5, 2.5], "shape": [2]},
        {"name": "i4", "datatype": "FP16", "data": [0.5], "shape": [1]},
        {"name": "i5", "datatype": "INT64", "data": [1, 2], "shape": [2]},
        {"name": "i6", "datatype": "FP64", "data": [0.25], "shape": [1]},
        {"name": "i7", "datatype": "BYTES", "data": ["a", "bc"], "shape": [2]},
        {"name": "i8", "datatype": "BYTES", "data": [{"k": 1}], "shape": [1]},
    ]


@pytest.mark.parametrize(
    ("body_id", "expected"),
    [("abc", "abc"), (None, "r1"), ("", "r1"), ("   ", "r1")],
)
def test_v2_response_id(model_dir: Path, body_id: str | None, expected: str) -> None:
    svc = service(model_dir, "echo", "kservev2")
    body: dict[str, Any] = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}
    if body_id is not None:
        body["id"] = body_id
    assert body_of(svc.predict(batch(json_req("r1", body))))["id"] == expected
    # the id of one batch does not leak into the next
    body.pop("id", None)
    assert body_of(svc.predict(batch(json_req("r2", body))))["id"] == "r2"


def test_v2_without_manifest(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "nomanifest", None, {"kfns.py": HANDLERS})
    svc = service(d, "echo", "kservev2")
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}
    reply = body_of(svc.predict(batch(json_req("r1", body))))
    assert (reply["model_name"], reply["model_version"]) == (None, None)


def test_v2_with_a_base_handler_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    d = make_model_dir(
        tmp_path / "tiny",
        {**MODEL, "handler": "tiny_v2.py", "serializedFile": "weights.pth", "modelFile": "model.py"},
        {"model.py": TINY_NET, "tiny_v2.py": TINY_HANDLER},
    )
    sys.path.insert(0, str(d))
    from model import TinyNet  # type: ignore[import-not-found]

    net = TinyNet()
    torch.save(net.state_dict(), d / "weights.pth")
    svc = HandlerService.load(load_msg(d, "", envelope="kservev2", batch_size=1))
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    body = {"id": "b", "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": x}]}
    expected = net(torch.tensor(x).reshape(2, 3)).detach().flatten().tolist()
    assert body_of(svc.predict(batch(json_req("r1", body)))) == {
        "id": "b",
        "model_name": "tiny",
        "model_version": "2.0",
        "outputs": [{"name": "x", "datatype": "FP32", "data": expected, "shape": [4]}],
    }


# -- malformed bodies: the batch fails, the worker goes on --------------------------------------------------

GOOD_V2 = {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}]}


def json_item(body: Any) -> tuple[str, str, bytes]:
    return ("body", "application/json", json.dumps(body).encode())


def v2_input(**fields: Any) -> tuple[str, str, bytes]:
    return json_item({"inputs": [{"name": "x", "datatype": "INT64", **fields}]})


@pytest.mark.parametrize(
    ("envelope", "fn", "item", "error"),
    [
        ("kserve", "record", ("body", "application/octet-stream", b"{not json"), "not valid JSON"),
        ("kserve", "record", ("body", "application/octet-stream", b"\xff\xfe"), "not valid JSON"),
        ("kserve", "record", json_item([1, 2]), "must be a JSON object, not list"),
        ("kserve", "record", ("body", "text/plain", b"hello"), "must be a JSON object, not str"),
        ("kserve", "record", ("other", "application/json", b"{}"), "must be a JSON object, not NoneType"),
        ("kservev2", "echo", json_item({"id": "x"}), 'has no "inputs" list'),
        ("kservev2", "echo", json_item({"inputs": {"a": 1}}), 'has no "inputs" list'),
        ("kservev2", "echo", json_item({"inputs": [1]}), 'with "name", "datatype"'),
        ("kservev2", "echo", v2_input(data=[1, 2]), "cannot shape its data"),  # no shape
        ("kservev2", "echo", v2_input(shape=[3], data=[1]), "cannot shape its data"),
        ("kservev2", "echo", v2_input(datatype="BYTES", data=[]), "BYTES data must be a non-empty list"),
        ("kservev2", "echo", json_item({"id": 5, "inputs": []}), '"id" must be a string'),
        ("kservev2", "too_many", json_item(GOOD_V2), "2 outputs for 1 inputs"),
        ("kservev2", "complex_output", json_item(GOOD_V2), "no KServe datatype for numpy dtype complex128"),
    ],
)
def test_malformed_bodies_fail_the_batch(
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    envelope: str,
    fn: str,
    item: tuple[str, str, bytes],
    error: str,
) -> None:
    svc = service(model_dir, fn, envelope)
    assert_batch_failed(svc.predict(batch(req("bad", item))))
    err = capsys.readouterr().err
    assert f"EnvelopeError: {envelope}: " in err and error in err

    # the same service still answers a good request
    good = {"instances": [1]} if envelope == "kserve" else GOOD_V2
    if fn in ("record", "echo"):
        assert svc.predict(batch(json_req("ok", good))).code == 200
