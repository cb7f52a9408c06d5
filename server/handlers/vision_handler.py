"""``ts.torch_handler.vision_handler``: the preprocessing shared by the image handlers (spec §6.6).

For each request the image is its ``data`` or ``body`` input: a ``str`` is base64-decoded, bytes are
opened with PIL (no mode conversion) and passed through ``self.image_processing``; a list becomes a float
tensor. The batch is stacked and moved to the device. With ``limit_max_image_pixels`` off, PIL's
decompression-bomb limit is lifted.

Explanations use Captum's IntegratedGradients (``n_steps=15``) when captum is installed; without it an
explain request fails with 503.
"""

from __future__ import annotations

import base64
import io
from abc import ABC
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from server.handlers.base_handler import BaseHandler
from server.handlers.context import Context
from server.handlers.timer import timed
from server.handlers.util import PredictionException


class VisionHandler(BaseHandler, ABC):
    """Base class of the image handlers; subclasses set ``image_processing``."""

    image_processing: Callable[[Any], torch.Tensor]

    def initialize(self, context: Context) -> None:
        super().initialize(context)
        self.ig: Any = None
        try:
            from captum.attr import IntegratedGradients
        except ImportError:
            pass
        else:
            self.ig = IntegratedGradients(self.model)
        self.initialized = True
        if not context.system_properties.get("limit_max_image_pixels"):
            Image.MAX_IMAGE_PIXELS = None

    @timed
    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        images = []
        for row in data:
            image = row.get("data") or row.get("body")
            if isinstance(image, str):
                image = base64.b64decode(image)
            if isinstance(image, (bytes, bytearray)):
                tensor = self.image_processing(Image.open(io.BytesIO(image)))
            else:
                tensor = torch.FloatTensor(image)
            images.append(tensor)
        return torch.stack(images).to(self.device)

    def get_insights(self, tensor_data: Any, raw_input: Any, target: Any = 0) -> Any:
        if self.ig is None:
            raise PredictionException("Explanations need the captum package, which is not installed", 503)
        return self.ig.attribute(tensor_data, target=target, n_steps=15).tolist()
