"""``ts.torch_handler.request_envelope.json``: re-exports `server.handlers.envelopes`."""

from server.handlers.envelopes import (
    JSONEnvelope,
)

__all__ = ["JSONEnvelope"]
