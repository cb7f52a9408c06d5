"""TorchServe handlers run unchanged: ``compat.install()`` in a fresh interpreter, as a worker does it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.server.handlers.conftest import image_bytes, make_model_dir

REPO = Path(__file__).resolve().parents[3]

CUSTOM_HANDLER = """
    import logging

    from ts.context import Context
    from ts.handler_utils.timer import timed
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes
    from ts.torch_handler.base_handler import BaseHandler
    from ts.torch_handler.image_classifier import ImageClassifier
    from ts.utils.util import PredictionException

    logger = logging.getLogger(__name__)


    class MyClassifier(ImageClassifier):
        topk = 2

        def initialize(self, context: Context):
            super().initialize(context)
            assert isinstance(self, BaseHandler)
            self.seen_yaml = context.model_yaml_config

        @timed
        def preprocess(self, data):
            for row in data:
                if row.get("data") is None and row.get("body") is None:
                    raise PredictionException("no image given", 422)
            return super().preprocess(data)

        def postprocess(self, data):
            self.context.metrics.add_metric(
                "CustomCount", len(data), "count", None, [Dimension("Kind", "img")], MetricTypes.COUNTER
            )
            return super().postprocess(data)
    """

SCRIPT = """
    import importlib
    import importlib.util
    import json
    import pkgutil
    import sys

    model_dir, image_path = sys.argv[1], sys.argv[2]
    assert importlib.util.find_spec("ts") is None, "ts is importable before install()"

    from server.handlers.compat import COMPAT_DIR, install

    assert install() is True
    assert sys.path[-1] == COMPAT_DIR
    assert install() is True and sys.path.count(COMPAT_DIR) == 1  # idempotent

    import ts
    import ts.torch_handler

    # every module of the package imports
    for info in pkgutil.walk_packages(ts.__path__, "ts."):
        importlib.import_module(info.name)

    import server.handlers.base_handler
    import server.handlers.context
    import server.handlers.image_classifier
    import server.handlers.util
    import ts.context
    import ts.torch_handler.base_handler
    import ts.torch_handler.image_classifier
    import ts.utils.util

    checks = {
        "version": ts.__version__,
        "same_classifier": ts.torch_handler.image_classifier.ImageClassifier
        is server.handlers.image_classifier.ImageClassifier,
        "same_base": ts.torch_handler.base_handler.BaseHandler is server.handlers.base_handler.BaseHandler,
        "same_context": ts.context.Context is server.handlers.context.Context,
        "same_exception": ts.utils.util.PredictionException is server.handlers.util.PredictionException,
    }

    from server.handlers.service import HandlerService
    from server.runtime.messages import Inference, InputItem, Load, Request

    service = HandlerService.load(Load("custom", model_dir, 2, "custom_handler.py"))
    image = open(image_path, "rb").read()
    first = Request("a", [], [InputItem("data", "image/jpeg", image)])
    second = Request("b", [], [InputItem("body", "", image)])
    ok = service.predict(Inference([first, second]))
    bad = service.predict(Inference([Request("c", [], [InputItem("other", "", b"x")])]))
    checks["ok"] = [ok.code, [json.loads(r.body) for r in ok.responses]]
    checks["bad"] = [bad.code, bad.message]
    checks["handler_class"] = type(service.handler).__name__
    checks["yaml"] = service.handler.seen_yaml
    checks["metrics"] = sorted({r.name for r in service.metrics.drain()})
    print("RESULT " + json.dumps(checks))
    """


def run_clean(script: str, *args: str, cwd: Path, extra_path: str = "") -> subprocess.CompletedProcess[str]:
    """A fresh interpreter whose sys.path has the repository (and ``extra_path``) but no ``ts``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, str(REPO)) if p)
    env["TSC_TORCH_THREADS"] = "1"
    path = cwd / "script.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, "-s", str(path), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchserve_handler_runs_unchanged(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3)).eval()
    d = make_model_dir(
        tmp_path / "model",
        {"handler": "custom_handler.py", "serializedFile": "tiny.pt", "configFile": "model-config.yaml"},
        {
            "custom_handler.py": CUSTOM_HANDLER,
            "index_to_name.json": json.dumps({"0": "cat", "1": "dog", "2": "fish"}),
            "model-config.yaml": "handler:\n  profile: true\n",
        },
    )
    torch.jit.trace(model, torch.zeros(1, 3, 224, 224)).save(str(d / "tiny.pt"))
    image = tmp_path / "kitten.jpg"
    image.write_bytes(image_bytes("JPEG"))

    done = run_clean(SCRIPT, str(d), str(image), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    checks = json.loads(line[len("RESULT ") :])
    assert checks["version"] == "0.12.0"
    assert all(checks[k] for k in ("same_classifier", "same_base", "same_context", "same_exception"))
    assert checks["handler_class"] == "MyClassifier"
    assert checks["yaml"] == {"handler": {"profile": True}}
    code, results = checks["ok"]
    assert code == 200 and len(results) == 2
    for result in results:
        assert len(result) == 2 and set(result) <= {"cat", "dog", "fish"}  # topk = 2 from the subclass
        assert list(result.values()) == sorted(result.values(), reverse=True)
    assert checks["bad"] == [422, "no image given"]
    assert {"CustomCount", "HandlerTime", "PredictionTime", "ts_handler_preprocess"} <= set(checks["metrics"])


def test_a_real_ts_package_wins(tmp_path: Path) -> None:
    fake = tmp_path / "site"
    (fake / "ts").mkdir(parents=True)
    (fake / "ts" / "__init__.py").write_text("REAL = True\n")
    script = """
        import sys

        from server.handlers.compat import COMPAT_DIR, install

        assert install() is False
        assert COMPAT_DIR not in sys.path
        import ts

        assert ts.REAL
        print("OK")
        """
    done = run_clean(script, cwd=tmp_path, extra_path=str(fake))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OK"
