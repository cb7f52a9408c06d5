"""Token authorization (on by default, as in TorchServe 0.12) against a real `tsconsole serve` process:
the key file, every REST listener, gRPC metadata, rotation, expiry, and the command line finding its key.
"""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import empty_pb2

from server.api.grpc.proto import inference_pb2_grpc, management_pb2, management_pb2_grpc
from server.auth import FAILED, TOKEN_API_FAILED
from tests.e2e.conftest import ForegroundServer, make_echo_store, server_env, tsconsole

AUTH_ON = {"disable_token_authorization": "false", "enable_model_api": "true"}


def keys(server: ForegroundServer) -> dict[str, str]:
    document = json.loads((server.cwd / "key_file.json").read_text())
    return {name: entry["key"] for name, entry in document.items()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForegroundServer]:
    cwd = tmp_path_factory.mktemp("auth")
    (cwd / "store").mkdir()
    make_echo_store(cwd / "store")
    started = ForegroundServer(cwd, ["--model-store", "store", "--models", "echo.mar", "--ncs"], config=AUTH_ON)
    yield started
    assert started.stop() == 0
    assert not (cwd / "key_file.json").exists()  # removed when the server stops


def refused(response: httpx.Response, message: str = FAILED) -> bool:
    return response.status_code == 400 and response.json() == {
        "code": 400,
        "type": "InvalidKeyException",
        "message": message,
    }


def test_the_key_file(server: ForegroundServer) -> None:
    path = server.cwd / "key_file.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert set(document) == {"management", "inference", "API"}
    assert "expiration time" in document["management"] and "expiration time" not in document["API"]
    values = [entry["key"] for entry in document.values()]
    assert len(set(values)) == 3 and all(len(v) >= 22 for v in values)  # 128 bits or more, URL-safe base64


def test_rest_listeners_need_their_own_key(server: ForegroundServer) -> None:
    inference, management = server.inference, server.urls["management"]
    k = keys(server)
    assert refused(httpx.get(f"{inference}/ping"))
    assert refused(httpx.get(f"{inference}/ping", headers=bearer(k["management"])))
    assert refused(httpx.get(f"{inference}/ping", headers={"Authorization": k["inference"]}))  # no "Bearer"
    assert httpx.get(f"{inference}/ping", headers=bearer(k["inference"])).json() == {"status": "Healthy"}
    assert refused(httpx.post(f"{inference}/predictions/echo", content=b"x"))
    assert refused(httpx.get(f"{inference}/v2/health/ready"))
    assert httpx.post(f"{inference}/predictions/echo", content=b"x", headers=bearer(k["inference"])).status_code == 200
    assert refused(httpx.get(f"{management}/models", headers=bearer(k["inference"])))
    assert httpx.get(f"{management}/models", headers=bearer(k["management"])).status_code == 200
    assert refused(httpx.get(f"{management}/console/system"))  # the console's endpoints too
    assert httpx.get(f"{management}/console/system", headers=bearer(k["management"])).status_code == 200
    for base in (inference, management):  # the API descriptions and the metrics listener are open
        assert httpx.request("OPTIONS", f"{base}/").status_code == 200
        assert httpx.get(f"{base}/api-description").status_code == 200
    assert httpx.get(f"{server.urls['metrics']}/metrics").status_code == 200


def test_a_model_named_token_is_just_a_model(server: ForegroundServer) -> None:
    management = server.urls["management"]
    auth = bearer(keys(server)["management"])
    params = {"url": "echo.mar", "model_name": "token", "initial_workers": "1"}
    assert httpx.post(f"{management}/models", params=params, headers=auth, timeout=60).status_code == 200
    assert httpx.get(f"{management}/models/token", headers=auth).json()[0]["modelName"] == "token"
    assert httpx.delete(f"{management}/models/token", headers=auth, timeout=60).status_code == 200


def test_rotation_with_the_api_key(server: ForegroundServer) -> None:
    management, inference = server.urls["management"], server.inference
    before = keys(server)
    assert refused(httpx.get(f"{management}/token", params={"type": "inference"}), TOKEN_API_FAILED)
    assert refused(httpx.get(f"{management}/token", params={"type": "inference"}, headers=bearer(before["management"])),
                   TOKEN_API_FAILED)  # fmt: skip
    assert refused(httpx.get(f"{management}/token", params={"type": "other"}, headers=bearer(before["API"])),
                   TOKEN_API_FAILED)  # fmt: skip
    rotated = httpx.get(f"{management}/token", params={"type": "inference"}, headers=bearer(before["API"]))
    assert rotated.status_code == 200
    after = keys(server)
    assert after["inference"] != before["inference"] and after["management"] == before["management"]
    assert refused(httpx.get(f"{inference}/ping", headers=bearer(before["inference"])))
    assert httpx.get(f"{inference}/ping", headers=bearer(after["inference"])).status_code == 200
    assert stat.S_IMODE((server.cwd / "key_file.json").stat().st_mode) == 0o600


def test_grpc_needs_the_key_of_its_port(server: ForegroundServer) -> None:
    k = keys(server)
    with grpc.insecure_channel(server.urls["grpc_inference"]) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Ping(empty_pb2.Empty())
        assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.PERMISSION_DENIED, FAILED)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Ping(empty_pb2.Empty(), metadata=[("authorization", f"Bearer {k['management']}")])
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        ping = stub.Ping(empty_pb2.Empty(), metadata=[("authorization", f"Bearer {k['inference']}")])
        assert "Healthy" in ping.health
    with grpc.insecure_channel(server.urls["grpc_management"]) as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        request = management_pb2.ListModelsRequest()
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListModels(request, metadata=[("authorization", f"Bearer {k['inference']}")])
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        listed = stub.ListModels(request, metadata=[("authorization", f"Bearer {k['management']}")])
        assert "echo" in listed.msg
    access_log = server.cwd / "logs" / "access_log.log"
    deadline = time.monotonic() + 10  # the log writer writes every 20 ms
    while 'InferenceAPIsService/Ping HTTP/2.0" 7 ' not in access_log.read_text():  # PERMISSION_DENIED is code 7
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_tritonclient_with_the_inference_key(server: ForegroundServer) -> None:
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    key = keys(server)["inference"]
    http = triton_http.InferenceServerClient(server.inference.removeprefix("http://"))
    assert http.is_server_live(headers=bearer(key))
    assert not http.is_server_live()  # 400 InvalidKeyException: tritonclient reads "not live"
    client = triton_grpc.InferenceServerClient(server.urls["grpc_inference"])
    assert client.is_server_ready(headers={"authorization": f"Bearer {key}"})
    with pytest.raises(InferenceServerException, match="Token Authorization failed"):
        client.is_server_ready()


def test_the_command_line_finds_or_takes_the_key(server: ForegroundServer, tmp_path: Path) -> None:
    management = ["--management", server.urls["management"]]
    here = tsconsole("models", *management, cwd=server.cwd)  # beside key_file.json
    assert here.returncode == 0 and "echo" in here.stdout
    elsewhere = tsconsole("models", *management, cwd=tmp_path, env=server_env(tmp_path))
    assert elsewhere.returncode == 1
    assert "Token Authorization failed" in elsewhere.stderr and "--token" in elsewhere.stderr
    given = tsconsole("models", *management, "--token", keys(server)["management"], cwd=tmp_path,
                      env=server_env(tmp_path))  # fmt: skip
    assert given.returncode == 0 and "echo" in given.stdout
    predicted = tsconsole("predict", "echo", "--data", "hi", "--url", server.inference, cwd=server.cwd)
    assert predicted.returncode == 0 and "hi" in predicted.stdout


def test_keys_expire(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    started = ForegroundServer(tmp_path, ["--model-store", "store", "--ncs"],
                               config={**AUTH_ON, "token_expiration_min": "0.05"})  # fmt: skip
    try:
        k = keys(started)
        assert httpx.get(f"{started.inference}/ping", headers=bearer(k["inference"])).status_code == 200
        time.sleep(3.5)
        assert refused(httpx.get(f"{started.inference}/ping", headers=bearer(k["inference"])))
        management = started.urls["management"]
        rotated = httpx.get(f"{management}/token", params={"type": "inference"}, headers=bearer(k["API"]))
        assert rotated.status_code == 200  # the API key never expires
        assert httpx.get(f"{started.inference}/ping", headers=bearer(keys(started)["inference"])).status_code == 200
    finally:
        assert started.stop() == 0


def test_authorization_off_on_every_interface_is_said_loudly(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    started = ForegroundServer(tmp_path, ["--model-store", "store", "--ncs", "--disable-token-auth"],
                               config={"grpc_inference_address": "0.0.0.0"})  # fmt: skip
    try:
        assert not (tmp_path / "key_file.json").exists()
        assert httpx.get(f"{started.inference}/ping").status_code == 200
    finally:
        assert started.stop() == 0
    output = "".join(started.output)
    assert "TOKEN AUTHORIZATION IS OFF" in output and "0.0.0.0:" in output
