"""The TorchServe version this compatibility package stands for."""

__version__ = "0.12.0"
