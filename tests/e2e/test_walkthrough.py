"""TorchServe's seed walkthrough, as written, against `tsconsole start` / `status` / `stop`.

1. archive densenet161 (torchvision's architecture, random weights: nothing can be downloaded);
2. `tsconsole start --ncs --model-store model_store --models densenet161.mar` returns once up;
3. `curl -T kitten.jpg` (a PUT) returns TorchServe 0.12's top-5 JSON with labels from index_to_name.json;
4. logs/ holds access_log.log, model_log.log and ts_log.log; `tsconsole stop` leaves no process behind.
One archive is made by `tsconsole archive`, one by the real torch-model-archiver.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.archiver.conftest import run_theirs
from tests.e2e.conftest import server_env, tsconsole, write_config

MODEL_PY = """from torchvision.models.densenet import DenseNet


class ImageClassifier(DenseNet):
    def __init__(self):
        super(ImageClassifier, self).__init__(48, (6, 12, 36, 24), 96)
"""


@pytest.fixture(scope="module")
def walkthrough_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    import torchvision
    from PIL import Image

    root = tmp_path_factory.mktemp("walkthrough")
    torch.manual_seed(0)
    torch.save(torchvision.models.densenet161(weights=None).state_dict(), root / "densenet161.pth")
    (root / "model.py").write_text(MODEL_PY)
    labels = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    (root / "index_to_name.json").write_text(json.dumps(labels))
    pixels = bytes((x * 7 + y * 3) % 256 for y in range(240) for x in range(320) for _ in range(3))
    Image.frombytes("RGB", (320, 240), pixels).save(root / "kitten.jpg")
    (root / "model_store").mkdir()
    return root


def test_densenet161_walkthrough(walkthrough_dir: Path) -> None:
    root = walkthrough_dir
    env = server_env(root)
    args = [
        "--model-name", "densenet161", "--version", "1.0", "--model-file", "model.py",
        "--serialized-file", "densenet161.pth", "--export-path", "model_store",
        "--extra-files", "index_to_name.json", "--handler", "image_classifier",
    ]  # fmt: skip
    ours = tsconsole("archive", *args, cwd=root, env=env)
    assert ours.returncode == 0, ours.stderr
    theirs_args = [a if a != "densenet161" else "densenet161_ts" for a in args]
    assert run_theirs("torch-model-archiver", theirs_args, root).returncode == 0

    urls = write_config(root, default_workers_per_model="1")
    start = tsconsole(
        "start", "--ncs", "--model-store", "model_store", "--models", "densenet161.mar", "densenet161_ts.mar",
        cwd=root, env=env,
    )  # fmt: skip
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        status = tsconsole("status", cwd=root, env=env)
        assert status.returncode == 0 and "Healthy" in status.stdout, status.stdout
        again = tsconsole("start", "--model-store", "model_store", cwd=root, env=env)
        assert again.returncode == 1 and "already running" in again.stderr

        with httpx.Client(timeout=120) as client:
            for model in ("densenet161", "densenet161_ts"):
                # curl http://127.0.0.1:8080/predictions/densenet161 -T kitten.jpg
                r = client.put(f"{urls['inference']}/predictions/{model}", content=(root / "kitten.jpg").read_bytes())
                assert r.status_code == 200, r.text
                top5 = json.loads(r.text)
                assert isinstance(top5, dict) and len(top5) == 5
                assert all(label.startswith("class_") for label in top5)  # the last element of each mapping list
                probabilities = list(top5.values())
                assert probabilities == sorted(probabilities, reverse=True)
                assert all(0 <= p <= 1 for p in probabilities)
                assert r.text.startswith('{\n  "class_')

        logs = root / "logs"
        deadline = time.monotonic() + 10
        while '"PUT /predictions/densenet161_ts' not in (logs / "access_log.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert (
            "W-9000-densenet161_1.0-stdout" in (logs / "model_log.log").read_text()
            or "W-9001-densenet161_1.0" in (logs / "model_log.log").read_text()
        )
        assert "Loading initial models" in (logs / "ts_log.log").read_text()

        pid = json.loads((root / "tsconsole.pid").read_text())["pid"]
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        assert len(family) >= 3  # the server and one worker per model
        # Only workers load torch; the server process itself never maps libtorch.
        assert "libtorch" not in Path(f"/proc/{pid}/maps").read_text()
        assert any("libtorch" in Path(f"/proc/{p.pid}/maps").read_text() for p in family[1:])
    finally:
        stop = tsconsole("stop", cwd=root, env=env)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    _gone, alive = psutil.wait_procs(family, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not (root / "tsconsole.pid").exists()
    assert tsconsole("status", cwd=root, env=env).returncode == 3
    assert "not currently running" in tsconsole("stop", cwd=root, env=env).stdout
