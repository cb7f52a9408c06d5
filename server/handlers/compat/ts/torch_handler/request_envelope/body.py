"""``ts.torch_handler.request_envelope.body``: re-exports `server.handlers.envelopes`."""

from server.handlers.envelopes import (
    BodyEnvelope,
)

__all__ = ["BodyEnvelope"]
