"""``ts.torch_handler.request_envelope``: service envelopes (see `server.handlers.envelopes`)."""
