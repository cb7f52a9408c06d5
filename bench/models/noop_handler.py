"""W1 handler: answers each request with the length in bytes of its body. No model, no torch work.

A JSON body reaches the handler already decoded (TorchServe and tsconsole both do that), so its length
is that of the compact re-serialised document.
"""

import json


def _size(body):
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    return len(json.dumps(body, separators=(",", ":")).encode())


def handle(data, context):
    if data is None:  # the load-time call
        return None
    return [_size(row.get("data") if row.get("data") is not None else row.get("body")) for row in data]
