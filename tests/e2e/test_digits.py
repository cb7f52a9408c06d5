"""The bundled digits model, served by `tsconsole serve`, classifies held-out digits over HTTP.

Its handler is a TorchServe-style custom class (`from ts.torch_handler.image_classifier import
ImageClassifier`), so this is also the test that such a handler runs unchanged.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from tests.e2e.conftest import DIGITS, ForegroundServer, digits_archive


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((image.astype(np.uint16) * 255 // 16).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_digits_are_classified_correctly_over_http(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    digits_archive(store)
    heldout = np.load(DIGITS / "heldout.npz")
    images, labels = heldout["images"], heldout["labels"]
    server = ForegroundServer(tmp_path, ["--model-store", "store", "--models", "digits=digits.mar", "--ncs"])
    try:
        url = f"{server.inference}/predictions/digits"

        def classify(i: int) -> str:
            with httpx.Client(timeout=60) as c:
                r = c.put(url, content=png(images[i]))
                assert r.status_code == 200, r.text
                scores = json.loads(r.text)
                return next(iter(scores))  # the most likely label first

        with ThreadPoolExecutor(max_workers=8) as pool:
            predicted = list(pool.map(classify, range(len(labels))))
        accuracy = sum(p == str(t) for p, t in zip(predicted, labels, strict=True)) / len(labels)
        assert accuracy >= 0.95, accuracy

        sample = (DIGITS / "samples" / "digit_3_30.png").read_bytes()
        with httpx.Client(timeout=60) as c:
            assert next(iter(json.loads(c.put(url, content=sample).text))) == "3"
        workers = server.workers()
        assert workers
    finally:
        assert server.stop() == 0
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
