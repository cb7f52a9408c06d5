"""Fixtures for the handler tests: model folders built in tmp dirs, Load/Inference helpers, images."""

from __future__ import annotations

import io
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.runtime.messages import Inference, InputItem, Load, Request


@pytest.fixture(autouse=True)
def _isolated_imports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Undo what loading a model does to the process: model dirs on sys.path, their modules in sys.modules."""
    path_before = list(sys.path)
    modules_before = set(sys.modules)
    yield
    sys.path[:] = path_before
    base = str(tmp_path_factory.getbasetemp())
    for name in set(sys.modules) - modules_before:
        module_file = getattr(sys.modules.get(name), "__file__", None) or ""
        if module_file.startswith(base):
            del sys.modules[name]


def make_model_dir(
    path: Path,
    model: dict[str, Any] | None = None,
    files: dict[str, str | bytes] | None = None,
) -> Path:
    """A model folder with ``MAR-INF/MANIFEST.json`` (``model`` section; None: no manifest) and files."""
    path.mkdir(parents=True, exist_ok=True)
    if model is not None:
        manifest = {"runtime": "python", "model": {"modelName": "m", "modelVersion": "1.0", **model}}
        (path / "MAR-INF").mkdir(exist_ok=True)
        (path / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
    for name, content in (files or {}).items():
        target = path / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(textwrap.dedent(content))
    return path


def load_msg(model_dir: Path, handler: str = "", **kwargs: Any) -> Load:
    return Load(
        model_name=kwargs.pop("model_name", "m"),
        model_path=str(model_dir),
        batch_size=kwargs.pop("batch_size", 4),
        handler=handler,
        **kwargs,
    )


def req(rid: str, *inputs: tuple[str, str, bytes], headers: list[tuple[str, str]] | None = None) -> Request:
    return Request(request_id=rid, headers=headers or [], inputs=[InputItem(n, ct, v) for n, ct, v in inputs])


def batch(*requests: Request) -> Inference:
    return Inference(requests=list(requests))


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (320, 240), seed: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def jpeg() -> bytes:
    return image_bytes("JPEG")


TINY_NET = (Path(__file__).parent / "tiny_models.py").read_text()
"""Source of a module defining one class, ``TinyNet`` (Linear 3 → 2)."""
