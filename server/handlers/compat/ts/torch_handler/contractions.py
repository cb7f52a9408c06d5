"""``ts.torch_handler.contractions``: re-exports `server.handlers.contractions`."""

from server.handlers.contractions import (
    CONTRACTION_MAP,
)

__all__ = ["CONTRACTION_MAP"]
