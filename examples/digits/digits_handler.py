"""A TorchServe handler for the digits model, written exactly as one would for TorchServe.

It only imports TorchServe's public handler API (``ts.torch_handler``), so the same file works with
TorchServe and with tsconsole. Input: an image (PNG/JPEG) of a digit, light ink on a dark
background as in scikit-learn's digits; it is turned to 8x8 grayscale with values in [0, 1].
"""

from torchvision import transforms
from ts.torch_handler.image_classifier import ImageClassifier


class DigitsClassifier(ImageClassifier):
    image_processing = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=1),
            transforms.Resize((8, 8)),
            transforms.ToTensor(),
        ]
    )
