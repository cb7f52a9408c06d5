"""``ts.torch_handler.image_classifier``: ImageNet-style classification (spec §6.6).

Preprocess: ``Resize(256)`` → ``CenterCrop(224)`` → ``ToTensor()`` → ``Normalize(ImageNet mean/std)``.
Postprocess: softmax over classes, the top ``min(topk, number of classes)`` per image as
``{label: probability}`` in descending order (label from ``index_to_name.json`` or the index string).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchvision import transforms

from server.handlers.timer import timed
from server.handlers.util import map_class_to_label
from server.handlers.vision_handler import VisionHandler


class ImageClassifier(VisionHandler):
    """Returns the most likely classes of each image."""

    topk = 5
    image_processing = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )

    def set_max_result_classes(self, topk: int) -> None:
        self.topk = topk

    def get_max_result_classes(self) -> int:
        return self.topk

    @timed
    def postprocess(self, data: torch.Tensor) -> list[dict[str, Any]]:
        ps = F.softmax(data, dim=1)
        k = min(self.topk, ps.shape[1])
        probs, classes = torch.topk(ps, k, dim=1)
        return map_class_to_label(probs.tolist(), self.mapping, classes.tolist())
