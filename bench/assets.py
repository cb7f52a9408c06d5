"""Everything the workloads need, made locally: request bodies, seeded weights, and .mar archives built
with our own archiver. Nothing is downloaded."""

from __future__ import annotations

import io
import json
from pathlib import Path

from archiver import ModelArchiveConfig, build_model_archive

MODELS_SRC = Path(__file__).resolve().parent / "models"
NOOP_BODY_BYTES = 247


def noop_body() -> bytes:
    """A compact JSON document of exactly NOOP_BODY_BYTES bytes."""
    head = {"id": 1, "kind": "noop", "text": ""}
    pad = NOOP_BODY_BYTES - len(json.dumps(head, separators=(",", ":")))
    return json.dumps(head | {"text": "lorem ipsum " * (pad // 12) + "x" * (pad % 12)}, separators=(",", ":")).encode()


def photo_jpeg(width: int = 500, height: int = 375, seed: int = 0) -> bytes:
    """A photo-like JPEG: smooth colour gradients, a soft blob, and sensor-like noise (about 35 KB)."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    blob = np.exp(-(((x - 0.6 * width) / 90) ** 2 + ((y - 0.45 * height) / 70) ** 2))
    rgb = np.stack([90 + 120 * x / width + 40 * blob, 60 + 100 * y / height + 90 * blob, 150 - 80 * x / width], -1)
    rgb += rng.normal(0, 10, rgb.shape)
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90)
    return out.getvalue()


def resnet18_weights(path: Path, seed: int = 0) -> Path:
    if not path.exists():
        import torch
        import torchvision

        torch.manual_seed(seed)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def build(work: Path, workloads: list[str]) -> dict[str, Path]:
    """Bodies in work/assets, archives in work/model_store; returns {asset or model name: path}."""
    assets, store = work / "assets", work / "model_store"
    assets.mkdir(parents=True, exist_ok=True)
    store.mkdir(parents=True, exist_ok=True)
    (assets / "noop.json").write_bytes(noop_body())
    (assets / "photo.jpg").write_bytes(photo_jpeg())
    paths = {"noop.json": assets / "noop.json", "photo.jpg": assets / "photo.jpg", "model_store": store}
    for old in store.glob("*.mar"):
        old.unlink()  # rebuilt every run, so the archives always match the sources
    common = {"version": "1.0", "export_path": str(store)}
    if "noop" in workloads:
        config = ModelArchiveConfig("noop", str(MODELS_SRC / "noop_handler.py"), **common)
        paths["noop"] = build_model_archive(config)
    if "resnet18" in workloads:
        labels = assets / "index_to_name.json"
        labels.write_text(json.dumps({str(i): f"class_{i:04d}" for i in range(1000)}))
        config = ModelArchiveConfig(
            "resnet18",
            "image_classifier",
            serialized_file=str(resnet18_weights(assets / "resnet18.pth")),
            model_file=str(MODELS_SRC / "resnet18_model.py"),
            extra_files=str(labels),
            **common,
        )
        paths["resnet18"] = build_model_archive(config)
    return paths
