"""HandlerService.predict: input decoding (§6.2), return values and whole-batch failures (§6.3), per-request
response control, metrics, describe, streaming hook and envelopes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from server.handlers.service import HandlerService
from server.runtime.messages import Inference, Reply
from tests.server.handlers.conftest import batch, load_msg, make_model_dir, req

HANDLERS = """
    import torch

    from server.handlers.responses import send_intermediate_predict_response
    from server.handlers.util import PredictionException

    SEEN = {}


    def _describe(value):
        if isinstance(value, (bytes, bytearray)):
            return [type(value).__name__, list(value)]
        return [type(value).__name__, value]


    def echo(data, context):
        if data is None:
            return None
        SEEN["ids"] = dict(context.request_ids)
        SEEN["headers"] = [context.get_all_request_header(i) for i in range(len(data))]
        return [{name: _describe(value) for name, value in row.items()} for row in data]


    def flat(data, context):
        if data is None:
            return None
        SEEN["flat"] = data
        return [f"out{i}" for i in range(len(data))]


    def not_a_list(data, context):
        return data and {"a": 1}


    def one_short(data, context):
        return data and data[:-1]


    def prediction_exception(data, context):
        if data is not None:
            raise PredictionException("teapot says no", 418)


    def out_of_memory(data, context):
        if data is not None:
            raise MemoryError()


    def cuda_error(data, context):
        if data is not None:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_NOT_INITIALIZED")


    def generic_error(data, context):
        if data is not None:
            raise KeyError("oops")


    def unserializable(data, context):
        return data and [object() for _ in data]


    def mixed(data, context):
        if data is None:
            return None
        return [b"\\x00raw", "t\\u00e9xt", torch.arange(3), {"k": [1, 2]}, None][: len(data)]


    def control(data, context):
        if data is None:
            return None
        context.set_response_status(201, "Made", 0)
        context.set_response_content_type(0, "application/x-thing")
        context.set_response_header(0, "X-Custom", "yes")
        context.set_response_status(507, "", 1)
        return ["first", "Invalid response"]


    def all_status(data, context):
        if data is None:
            return None
        context.set_all_response_status(202, "Accepted")
        return ["a" for _ in data]


    def metrics(data, context):
        if data is None:
            return None
        context.metrics.add_counter("Requests", len(data))
        context.metrics.add_size("Payload", 1.5, idx=0, unit="kB")
        context.metrics.add_percent("Busy", 42.0)
        context.metrics.add_metric("Custom", 7, "count", idx=1)
        return ["ok" for _ in data]


    def streaming(data, context):
        if data is None:
            return None
        for i in range(2):
            parts = [f"part{i}" for _ in data]
            send_intermediate_predict_response(parts, context.request_ids, "Intermediate", 200, context)
        return ["done" for _ in data]
    """


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("predict"), None, {"fns.py": HANDLERS})


def service(model_dir: Path, fn: str, **kwargs: Any) -> HandlerService:
    return HandlerService.load(load_msg(model_dir, f"fns:{fn}", **kwargs))


def bodies(reply: Reply) -> list[Any]:
    assert reply.code == 200, reply.message
    return [json.loads(r.body) for r in reply.responses]


# -- decoding -----------------------------------------------------------------------------------------


def test_input_decoding(model_dir: Path) -> None:
    reply = service(model_dir, "echo").predict(
        batch(
            req("r1", ("body", "application/json", b'{"x": [1, 2]}')),
            req("r2", ("body", "text/plain", "h\u00e9".encode())),
            req("r3", ("body", "image/png", b"\x89PNG")),
            req("r4", ("body", "application/json", b"{not json")),
            req("r5", ("body", "", b"ab")),
            req("r6", ("body", "text/csv", b"\xff\xfe")),
            req("r7", ("body", "application/json; charset=utf-8", b"[1]")),
        )
    )
    assert bodies(reply) == [
        {"body": ["dict", {"x": [1, 2]}]},
        {"body": ["str", "h\u00e9"]},
        {"body": ["bytearray", list(b"\x89PNG")]},
        {"body": ["bytearray", list(b"{not json")]},  # invalid JSON stays raw
        {"body": ["bytearray", [97, 98]]},  # no content type: raw
        {"body": ["bytearray", [255, 254]]},  # invalid UTF-8 stays raw
        {"body": ["bytearray", [91, 49, 93]]},  # only exactly application/json is parsed
    ]
    assert [r.request_id for r in reply.responses] == [f"r{i}" for i in range(1, 8)]


def test_multipart_like_inputs_and_headers(model_dir: Path) -> None:
    svc = service(model_dir, "echo")
    reply = svc.predict(
        batch(
            req(
                "id-1",
                ("data", "image/jpeg", b"first"),
                ("name", "", b"kitty"),
                ("data", "image/jpeg", b"second"),  # same name twice: the last one wins
                ("meta", "application/json", b'{"a": 1}'),
                headers=[("X-Client", "tests"), ("explain", "False"), ("url_path", "")],
            ),
            req("id-2"),  # a describe-like request: no inputs at all
        )
    )
    assert bodies(reply) == [
        {"data": ["bytearray", list(b"second")], "name": ["bytearray", list(b"kitty")], "meta": ["dict", {"a": 1}]},
        {},
    ]
    seen = sys.modules["fns"].SEEN
    assert seen["ids"] == {0: "id-1", 1: "id-2"}
    assert seen["headers"][0] == {
        "data": {"content-type": "image/jpeg"},
        "name": {"content-type": ""},
        "meta": {"content-type": "application/json"},
        "X-Client": "tests",
        "explain": "False",
        "url_path": "",
    }
    assert seen["headers"][1] == {}
    ctx = svc.context
    assert ctx.get_request_id(1) == "id-2" and ctx.get_request_header(0, "X-Client") == "tests"


def test_decoding_can_be_turned_off(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_DECODE_INPUT_REQUEST", "false")
    reply = service(model_dir, "echo").predict(batch(req("a", ("body", "application/json", b"[1]"))))
    assert bodies(reply) == [{"body": ["bytearray", [91, 49, 93]]}]


# -- return values and whole-batch failures --------------------------------------------------------------

TWO = batch(req("a", ("body", "text/plain", b"1")), req("b", ("body", "text/plain", b"2")))


@pytest.mark.parametrize(
    ("fn", "code", "message"),
    [
        ("not_a_list", 503, "Invalid model predict output"),
        ("one_short", 503, "number of batch response mismatched"),
        ("prediction_exception", 418, "teapot says no"),
        ("out_of_memory", 507, "Out of resources"),
        ("cuda_error", 507, "Out of resources"),
        ("generic_error", 503, "Prediction failed"),
        ("unserializable", 503, "Unsupported model output data type."),
    ],
)
def test_whole_batch_failures(model_dir: Path, fn: str, code: int, message: str) -> None:
    reply = service(model_dir, fn).predict(TWO)
    assert (reply.code, reply.message, reply.responses) == (code, message, [])


def test_a_failed_batch_does_not_break_the_next(model_dir: Path) -> None:
    svc = service(model_dir, "echo")
    assert svc.predict(TWO).code == 200
    assert svc.predict(batch(req("c", ("body", "text/plain", b"3")))).code == 200


def test_generic_error_traceback_goes_to_stderr(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    service(model_dir, "generic_error").predict(TWO)
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'oops'" in err


def test_serialization_of_each_element_type(model_dir: Path) -> None:
    reply = service(model_dir, "mixed").predict(batch(*(req(f"r{i}", ("body", "text/plain", b"x")) for i in range(5))))
    assert reply.code == 200
    raw, text, tensor, obj, none = (r.body for r in reply.responses)
    assert raw == b"\x00raw"
    assert text == "t\u00e9xt".encode()
    assert torch.equal(torch.load(io.BytesIO(tensor)), torch.arange(3))
    assert obj == b'{\n  "k": [\n    1,\n    2\n  ]\n}'  # json.dumps(indent=2)
    assert none == b"null"
    assert all((r.status, r.reason, r.content_type, r.headers) == (200, "", "", []) for r in reply.responses)


# -- per-request response control ------------------------------------------------------------------------


def test_response_status_content_type_and_headers(model_dir: Path) -> None:
    reply = service(model_dir, "control").predict(TWO)
    assert reply.code == 200
    first, second = reply.responses
    assert (first.status, first.reason, first.content_type) == (201, "Made", "application/x-thing")
    assert first.headers == [("content-type", "application/x-thing"), ("X-Custom", "yes")]
    assert first.body == b"first"
    assert (second.status, second.reason, second.content_type, second.headers) == (507, "", "", [])
    assert second.body == b"Invalid response"


def test_set_all_response_status_and_fresh_state_per_batch(model_dir: Path) -> None:
    svc = service(model_dir, "all_status")
    assert [(r.status, r.reason) for r in svc.predict(TWO).responses] == [(202, "Accepted")] * 2
    control = service(model_dir, "control")
    control.predict(TWO)
    # the next batch starts with default status and no headers
    control._entry_point = lambda data, ctx: ["x" for _ in data]
    assert [(r.status, r.headers) for r in control.predict(TWO).responses] == [(200, [])] * 2


# -- metrics ----------------------------------------------------------------------------------------------


def test_metrics_are_recorded(model_dir: Path) -> None:
    svc = service(model_dir, "metrics", model_name="mx")
    svc.predict(TWO)
    records = {r.name: r for r in svc.metrics.drain()}
    assert set(records) == {"Requests", "Payload", "Busy", "Custom", "PredictionTime"}
    assert records["Requests"].value == 2 and records["Requests"].unit == "Count"
    assert records["Requests"].dimensions == (("ModelName", "mx"), ("Level", "Model"))
    assert records["Requests"].request_id == "a,b"
    assert records["Payload"].unit == "Kilobytes" and records["Payload"].request_id == "a"
    assert records["Busy"].unit == "Percent"
    assert records["Custom"].request_id == "b"
    assert records["PredictionTime"].unit == "Milliseconds" and records["PredictionTime"].value >= 0
    line = records["Requests"].log_line(hostname="h")
    assert line.startswith("[METRICS]Requests.Count:2|#ModelName:mx,Level:Model|#type:COUNTER|#hostname:h,")
    assert line.endswith(",a,b")
    assert svc.metrics.drain() == []


def test_failed_batches_record_no_prediction_time(model_dir: Path) -> None:
    svc = service(model_dir, "generic_error")
    svc.predict(TWO)
    assert [r.name for r in svc.metrics.drain()] == []


# -- streaming ---------------------------------------------------------------------------------------------


def test_intermediate_responses_go_through_the_sender(model_dir: Path) -> None:
    svc = service(model_dir, "streaming")
    sent: list[Reply] = []
    svc.set_intermediate_sender(sent.append)
    final = svc.predict(TWO)
    assert [(r.code, r.message) for r in sent] == [(200, "Intermediate")] * 2
    assert [[x.body for x in r.responses] for r in sent] == [[b"part0", b"part0"], [b"part1", b"part1"]]
    assert all(("ts_stream_next", "true") in x.headers for r in sent for x in r.responses)
    assert [x.body for x in final.responses] == [b"done", b"done"]
    assert all(("ts_stream_next", "false") in x.headers for x in final.responses)


def test_streaming_without_a_sender_fails_the_batch(model_dir: Path) -> None:
    assert service(model_dir, "streaming").predict(TWO).code == 503


# -- BaseHandler.handle: describe and explain ------------------------------------------------------------

DESCRIBED = """
    from server.handlers.base_handler import BaseHandler


    class Described(BaseHandler):
        def initialize(self, context):
            self.initialized = True

        def preprocess(self, data):
            return [row.get("body") for row in data]

        def inference(self, data, *args, **kwargs):
            return data

        def postprocess(self, data):
            return [f"echo:{x}" for x in data]

        def describe_handle(self):
            return {"about": "me"}
    """


def test_describe_and_explain_headers(tmp_path: Path) -> None:
    d = make_model_dir(tmp_path / "described", None, {"described.py": DESCRIBED})
    svc = HandlerService.load(load_msg(d, "described"))
    assert [r.body for r in svc.predict(TWO).responses] == [b"echo:1", b"echo:2"]
    described = svc.predict(batch(req("d", headers=[("describe", "True")])))
    assert json.loads(described.responses[0].body) == {"about": "me"}
    assert {r.name for r in svc.metrics.drain()} == {"HandlerTime", "PredictionTime"}
    explained = svc.predict(batch(req("e", ("body", "text/plain", b"1"), headers=[("explain", "True")])))
    assert (explained.code, explained.message) == (503, "Described does not support explanations")


# -- envelopes ---------------------------------------------------------------------------------------------


def test_json_envelope(model_dir: Path) -> None:
    svc = service(model_dir, "flat", envelope="json")
    payload_1 = json.dumps({"instances": [{"b64": "aGk="}, {"b64": "eW8="}]}).encode()
    payload_2 = json.dumps({"instances": [{"img": {"b64": "aGk="}, "k": 1}]}).encode()
    reply = svc.predict(
        batch(req("a", ("body", "application/json", payload_1)), req("b", ("body", "application/json", payload_2)))
    )
    # the handler sees the flat list of instances; the envelope splits the 3 outputs back 2 + 1
    assert sys.modules["fns"].SEEN["flat"] == [b"hi", b"yo", {"img": b"hi", "k": 1}]
    assert [json.loads(r.body) for r in reply.responses] == [
        {"predictions": ["out0", "out1"]},
        {"predictions": ["out2"]},
    ]


def test_body_envelope(model_dir: Path) -> None:
    svc = service(model_dir, "flat", envelope="body")
    reply = svc.predict(batch(req("a", ("data", "application/json", b"[1]")), req("b", ("body", "text/plain", b"x"))))
    assert sys.modules["fns"].SEEN["flat"] == [[1], "x"]
    assert [r.body for r in reply.responses] == [b"out0", b"out1"]


def test_a_batch_sets_torchs_thread_count_to_its_share(model_dir: Path) -> None:
    svc = service(model_dir, "echo")
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            reply = svc.predict(Inference([req("r", ("body", "", b"x"))], threads=threads))
            assert reply.code == 200 and torch.get_num_threads() == threads
        svc.predict(Inference([req("r", ("body", "", b"x"))], threads=0))  # 0: left as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
