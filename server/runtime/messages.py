"""Every message that crosses the frontend <-> worker socket. Parent and child both import this module.

The shapes follow TorchServe's own backend protocol (spec §7): a Load message, an Inference batch,
and one Reply for either.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InputItem:
    """One named input of a request: the raw body (``body``), or one form field / file part."""

    name: str
    content_type: str  # "" when the part carried none (plain form fields, query parameters)
    value: bytes


@dataclass
class Request:
    """One inference request inside a batch."""

    request_id: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    inputs: list[InputItem] = field(default_factory=list)


@dataclass
class Load:
    """Load the model in this worker (sent once, right after the worker starts)."""

    model_name: str
    model_path: str  # the unpacked archive folder
    batch_size: int
    handler: str  # "module[:function]" or a built-in name
    gpu_id: int = -1  # -1: CPU
    envelope: str = ""  # service_envelope: "", "body", "json", "kserve", "kservev2"
    limit_max_image_pixels: bool = True
    model_version: str = ""


@dataclass
class Inference:
    """A batch of requests, in arrival order; ``threads``: the compute threads the worker should use for it
    (its share of the cores while it runs; 0: leave them as they are)."""

    requests: list[Request]
    threads: int = 0


@dataclass
class Response:
    """The handler's answer to one request of a batch."""

    request_id: str
    body: bytes
    status: int = 200
    reason: str = ""
    content_type: str = ""  # "" means the handler set none (the HTTP reply then has no Content-Type)
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Reply:
    """A worker's answer to a Load or an Inference.

    ``code`` 200 means success and ``responses`` has one entry per request of the batch; any other code
    is a whole-batch failure (spec §6.3) and ``message`` says why (``Prediction failed``, ...).
    """

    code: int
    message: str
    responses: list[Response] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)  # the handler's ``[METRICS]...`` lines for this reply
