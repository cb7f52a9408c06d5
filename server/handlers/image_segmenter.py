"""``ts.torch_handler.image_segmenter``: semantic segmentation (spec §6.6).

Same transforms as the image classifier. The model output's ``"out"`` tensor (N×K×H×W; a plain tensor
is accepted too) is softmaxed over classes; per pixel the best class is kept, giving per image an
H×W×2 nested list of ``[class_index_as_float, probability]`` (224×224 with the default transforms).
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import transforms

from server.handlers.vision_handler import VisionHandler


class ImageSegmenter(VisionHandler):
    """Returns the top class and its probability for every pixel of each image."""

    image_processing = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )

    def postprocess(self, data: Any) -> list[Any]:
        out = data["out"] if isinstance(data, dict) else data
        best = torch.max(torch.nn.functional.softmax(out, dim=1), dim=1)
        return torch.stack([best.indices.to(best.values.dtype), best.values], dim=3).tolist()
