"""W2 model definition: torchvision's ResNet-18, the one class the eager-mode loader instantiates."""

from torchvision.models.resnet import BasicBlock, ResNet


class ResNet18(ResNet):
    def __init__(self):
        super().__init__(BasicBlock, [2, 2, 2, 2])
