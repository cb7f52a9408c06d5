"""``ts.torch_handler.request_envelope.kservev2``: re-exports `server.handlers.envelopes`."""

from server.handlers.envelopes import (
    KServev2Envelope,
)

__all__ = ["KServev2Envelope"]
