"""Train DigitsCNN on scikit-learn's bundled 8x8 digits data set (no download needed).

Rerun from the repository root with:

    .venv/bin/pip install scikit-learn   # only needed for training
    .venv/bin/python examples/digits/train.py

It is deterministic (fixed seeds, fixed stratified split, single CPU thread) and
finishes in a few seconds on CPU. It writes, next to this file:

* ``digits_cnn.pth``  - the trained ``state_dict`` of ``model.DigitsCNN``
* ``heldout.npz``     - the held-out split: ``images`` (uint8, (N, 8, 8), raw values
  0..16) and ``labels`` (int64, (N,)), so accuracy can be checked without sklearn
* ``samples/digit_<label>_<index>.png`` - one 8-bit grayscale held-out image per
  class, pixel = value * 255 // 16 (``<index>`` is the row in ``heldout.npz``)

and prints the held-out accuracy.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from model import DigitsCNN  # noqa: E402

SEED = 0
EPOCHS = 40
BATCH_SIZE = 32
LR = 5e-3


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """Raw sklearn digits (N, 8, 8) with values 0..16 -> float32 (N, 1, 8, 8) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    return (pred == y).float().mean().item()


def main() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=SEED, stratify=labels
    )

    xt, yt = to_tensor(x_train), torch.from_numpy(y_train)
    xv, yv = to_tensor(x_test), torch.from_numpy(y_test)

    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)

    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), BATCH_SIZE):
            idx = perm[i : i + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        scheduler.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(xt):.4f}")

    acc = evaluate(model, xv, yv)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params: {n_params}")
    print(f"held-out accuracy: {acc:.4f} ({round(acc * len(yv))}/{len(yv)})")

    torch.save(model.state_dict(), HERE / "digits_cnn.pth")
    np.savez_compressed(HERE / "heldout.npz", images=x_test, labels=y_test)

    samples = HERE / "samples"
    samples.mkdir(exist_ok=True)
    for old in samples.glob("digit_*.png"):
        old.unlink()
    for digit in range(10):
        index = int(np.flatnonzero(y_test == digit)[0])
        pixels = (x_test[index].astype(np.uint16) * 255 // 16).astype(np.uint8)
        Image.fromarray(pixels).save(samples / f"digit_{digit}_{index}.png")


if __name__ == "__main__":
    main()
