"""``ts.torch_handler.object_detector``: torchvision-style detection models (spec §6.6).

Preprocess: ``ToTensor()`` only (images of one batch must have the same size to be stacked). The model
returns one dict per image with ``boxes``, ``labels`` and ``scores``; detections with ``score >= 0.5``
are kept, each reported as ``{"<label>": [x1, y1, x2, y2], "score": <float>}`` (label from
``index_to_name.json`` or the index string). Each image gives a list, possibly empty.
"""

from __future__ import annotations

from typing import Any

from torchvision import transforms

from server.handlers.util import map_class_to_label
from server.handlers.vision_handler import VisionHandler


class ObjectDetector(VisionHandler):
    """Returns the detected objects of each image."""

    image_processing = transforms.Compose([transforms.ToTensor()])
    threshold = 0.5

    def postprocess(self, data: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        result = []
        for row in data:
            keep = row["scores"] >= self.threshold
            boxes = row["boxes"][keep].tolist()
            labels = row["labels"][keep].tolist()
            scores = row["scores"][keep].tolist()
            objects = []
            for label, box, score in zip(labels, boxes, scores, strict=True):
                obj = map_class_to_label([[box]], self.mapping, [[label]])[0]
                obj["score"] = score
                objects.append(obj)
            result.append(objects)
        return result
