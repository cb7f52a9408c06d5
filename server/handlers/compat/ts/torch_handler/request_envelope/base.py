"""``ts.torch_handler.request_envelope.base``: re-exports `server.handlers.envelopes`."""

from server.handlers.envelopes import (
    BaseEnvelope,
)

__all__ = ["BaseEnvelope"]
