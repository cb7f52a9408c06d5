"""Tiny CNN for the scikit-learn 8x8 digits data set.

Input: float32 tensor of shape (N, 1, 8, 8) with pixel values in [0, 1]
(sklearn value / 16.0, or 8-bit PNG pixel / 255.0); high value = ink.
Output: logits of shape (N, 10), one per digit class 0..9.

This file holds exactly one ``torch.nn.Module`` subclass, as TorchServe's
eager-mode ``--model-file`` requires.
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Two 3x3 conv layers, one 2x2 max-pool and a linear classifier (~3.8k params)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))
