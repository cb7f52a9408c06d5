"""Fixtures for archiver tests: real model inputs and the two archivers (theirs and ours) as CLIs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def real_tool(name: str) -> str:
    """A real TorchServe archiver CLI, installed next to this Python (a dev dependency)."""
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `pip install -e '.[dev]'`")
    return path


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def run_theirs(tool: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([real_tool(tool), *args], cwd)


def run_ours(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "tsconsole", "archive", *args], cwd)


@pytest.fixture(scope="session")
def model_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real archive inputs: an eager model file and its state_dict, a handler, extras."""
    import torch

    root = tmp_path_factory.mktemp("inputs")
    (root / "model.py").write_text(
        "import torch\n\n\nclass Tiny(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.fc = torch.nn.Linear(16, 4)\n\n"
        "    def forward(self, x):\n        return self.fc(x)\n"
    )
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 4)
    torch.save({f"fc.{k}": v for k, v in layer.state_dict().items()}, root / "tiny.pth")
    (root / "my_handler.py").write_text(
        "def handle(data, context):\n    return [len(row) for row in data] if data else None\n"
    )
    (root / "index_to_name.json").write_text(json.dumps({str(i): f"class{i}" for i in range(4)}))
    (root / "requirements.txt").write_text("numpy\n")
    (root / "model-config.yaml").write_text("minWorkers: 1\nmaxWorkers: 2\nbatchSize: 4\nmaxBatchDelay: 50\n")
    extra = root / "extra"
    (extra / "sub" / "deeper").mkdir(parents=True)
    (extra / "vocab.txt").write_text("a\nb\nc\n")
    (extra / "sub" / "table.csv").write_text("x,y\n1,2\n")
    (extra / "sub" / "deeper" / "blob.bin").write_bytes(bytes(range(256)) * 40)
    (extra / ".dotfile").write_text("kept: only dot-folders are skipped\n")
    for skipped in ("__pycache__", ".git", "__MACOSX"):
        (extra / skipped).mkdir()
        (extra / skipped / "junk.txt").write_text("left out\n")
    (root / "glob_a.txt").write_text("glob a\n")
    (root / "glob_b.txt").write_text("glob b\n")
    return root
