"""``ts.torch_handler.request_envelope.kserve``: re-exports `server.handlers.envelopes`."""

from server.handlers.envelopes import (
    KServeEnvelope,
)

__all__ = ["KServeEnvelope"]
