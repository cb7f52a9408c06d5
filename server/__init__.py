"""The tsconsole inference server: TorchServe-compatible REST APIs over worker processes.

The frontend (this package less `server.runtime.worker` and `server.handlers`) never imports torch;
only worker processes do.
"""

__version__ = "0.12.0"  # the TorchServe API version we are compatible with
