"""Config snapshots (spec §10): a restart restores every model, version, default and worker count."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from server.properties import parse_properties
from tests.e2e.conftest import ForegroundServer, make_echo_store


def state(client: httpx.Client, mgmt: str) -> list[dict]:
    versions = json.loads(client.get(f"{mgmt}/models/echo/all").text)
    default = json.loads(client.get(f"{mgmt}/models/echo").text)[0]["modelVersion"]
    return [
        {
            "version": d["modelVersion"], "min": d["minWorkers"], "max": d["maxWorkers"], "batch": d["batchSize"],
            "workers": len(d["workers"]), "default": d["modelVersion"] == default, "url": d["modelUrl"],
        }
        for d in versions
    ]  # fmt: skip


def test_restart_restores_models_versions_default_and_workers(tmp_path: Path, client: httpx.Client) -> None:
    store = tmp_path / "store"
    store.mkdir()
    make_echo_store(store, ("1.0", "2.0"))
    args = ["--model-store", "store", "--enable-model-api"]
    first = ForegroundServer(tmp_path, args)
    mgmt = first.urls["management"]
    try:
        register = {"url": "echo_v1.0.mar", "model_name": "echo"}
        assert client.post(f"{mgmt}/models", params=register).status_code == 200
        register = {"url": "echo_v2.0.mar", "model_name": "echo", "batch_size": "4"}
        assert client.post(f"{mgmt}/models", params=register).status_code == 200
        scale = {"min_worker": "2", "max_worker": "3", "synchronous": "true"}
        assert client.put(f"{mgmt}/models/echo/2.0", params=scale).status_code == 200
        assert client.put(f"{mgmt}/models/echo/2.0/set-default").status_code == 200
        before = state(client, mgmt)
    finally:
        assert first.stop() == 0
    assert [v["default"] for v in before] == [False, True] and before[1]["min"] == 2

    snapshots = sorted((tmp_path / "logs" / "config").glob("*.cfg"))
    kinds = [p.stem.split("-", 1)[1] for p in snapshots]
    assert kinds[0] == "startup" and kinds[-1] == "shutdown" and kinds.count("snapshot") == 4
    saved = json.loads(parse_properties(snapshots[-1].read_text())["model_snapshot"])
    assert saved["modelCount"] == 1 and saved["models"]["echo"]["2.0"]["defaultVersion"] is True
    assert saved["models"]["echo"]["2.0"]["marName"] == "echo_v2.0.mar"

    second = ForegroundServer(tmp_path, args, urls=first.urls)
    try:
        after = state(client, mgmt)
        assert after == before
        restored = json.loads(client.get(f"{mgmt}/models/echo").text)[0]
        assert restored["loadedAtStartup"] is False
        reply = client.post(f"{second.inference}/predictions/echo", content=b"x")
        assert json.loads(reply.text)["version"] == "2.0"
    finally:
        assert second.stop() == 0

    # --ncs neither reads nor writes snapshots.
    count = len(list((tmp_path / "logs" / "config").glob("*.cfg")))
    third = ForegroundServer(tmp_path, [*args, "--ncs"], urls=first.urls)
    try:
        assert json.loads(client.get(f"{mgmt}/models").text) == {"models": []}
    finally:
        assert third.stop() == 0
    assert len(list((tmp_path / "logs" / "config").glob("*.cfg"))) == count
