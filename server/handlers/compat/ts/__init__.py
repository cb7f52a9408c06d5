"""TorchServe's ``ts`` package, as provided by tsconsole (see `server.handlers.compat`)."""

from ts.version import __version__

__all__ = ["__version__"]
