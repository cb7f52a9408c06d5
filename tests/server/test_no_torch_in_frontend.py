"""The frontend never imports torch: only worker processes do (DESIGN.md); numpy waits for OIP requests."""

from __future__ import annotations

import subprocess
import sys

FRONTEND_MODULES = [
    "server.app", "server.__main__", "server.api.inference", "server.api.management", "server.api.metrics",
    "server.models.registry", "server.models.store", "server.runtime.pool", "server.telemetry.metrics",
    "tsconsole.cli", "tsconsole.client", "tsconsole.daemon", "archiver",
]  # fmt: skip


def test_importing_the_frontend_does_not_import_torch() -> None:
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in FRONTEND_MODULES)
    code += "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_server_starts_without_numpy_until_the_open_inference_protocol_needs_it() -> None:
    """numpy costs the start a tenth of a second; only OIP tensors use it, from their first request on."""
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in FRONTEND_MODULES)
    code += "print('numpy' in sys.modules)\n"
    code += "from server.oip.tensors import tensor_from_values\n"
    code += "tensor_from_values('x', 'FP32', [2], [1.0, 2.5])\n"
    code += "print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
