"""``ts.protocol.otf_message_handler``: re-exports `server.handlers.responses`."""

from server.handlers.responses import (
    send_intermediate_predict_response,
)

__all__ = ["send_intermediate_predict_response"]
