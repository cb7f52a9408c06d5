"""The Open Inference Protocol's rules, once, for its REST and gRPC front doors.

tsconsole serves the protocol for every model, with no global setting: each input tensor of an infer request
reaches the handler as its own request whose ``data`` is the tensor's values in their shape (`handler_rows`),
so a plain TorchServe handler works unchanged, and each answer becomes one output tensor. The inputs of one
request are queued together and batched like any other requests. A model whose ``service_envelope`` is one
of TorchServe's KServe envelopes keeps TorchServe's behaviour instead: the request body goes to the handler
as it came, and the envelope translates (`passes_through`).

Model metadata comes from the ``oip`` section of the archive's ``model-config.yaml``
(``platform``, ``inputs``/``outputs`` as lists of ``{name, datatype, shape}``), else from the handler's
customized metadata (its ``describe_handle``) when that has ``inputs`` or ``outputs``, else it is empty.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from server import __version__
from server.errors import ServeError
from server.models.control import ModelControl
from server.models.dataplane import DataPlane
from server.models.registry import ModelVersion
from server.oip.handler_rows import output_names, to_handler_request, to_output_tensor
from server.oip.tensors import InferRequest, InferResponse

log = logging.getLogger(__name__)
SERVER_NAME = "tsconsole"
EXTENSIONS = ["binary_tensor_data"]  # Triton's binary tensor extension (REST)
KSERVE_ENVELOPES = ("kserve", "kservev2")
PLATFORM = "pytorch_torchserve"


class OpenInference:
    def __init__(self, data: DataPlane, control: ModelControl) -> None:
        self.data = data
        self.control = control
        self.registry = data.registry

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.data.server_ready()

    def model_ready(self, name: str, version: str | None) -> bool:
        return self.data.model_ready(name, version or None)

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def passes_through(self, name: str, version: str | None) -> bool:
        """True for a model served with TorchServe's ``kserve``/``kservev2`` envelope: its body goes as is."""
        return self.registry.get(name, version or None).spec.envelope in KSERVE_ENVELOPES

    async def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        entry = self.registry.get(name, version or None)
        declared = entry.config.get("oip")
        metadata: dict[str, Any] = declared if isinstance(declared, dict) else {}
        if "inputs" not in metadata and "outputs" not in metadata:
            metadata = await self._handler_metadata(entry)
        return {
            "name": name,
            "versions": [v.version for v in self.registry.versions(name)],
            "platform": str(metadata.get("platform") or PLATFORM),
            "inputs": _tensor_metadata(metadata.get("inputs")),
            "outputs": _tensor_metadata(metadata.get("outputs")),
        }

    async def _handler_metadata(self, entry: ModelVersion) -> dict[str, Any]:
        if not entry.pool.workers():
            return {}
        try:
            found = await self.control.customized_metadata(entry)
        except ServeError as exc:
            log.info("No metadata from the handler of %s: %s", entry.name, exc.message)
            return {}
        return found if isinstance(found, dict) else {}

    async def infer(self, request: InferRequest) -> InferResponse:
        """Run every input tensor as one handler request, concurrently; all answers or the first error."""
        name, version = request.model_name, request.model_version or None
        entry = self.registry.get(name, version)
        jobs = [to_handler_request(tensor, str(uuid.uuid4())) for tensor in request.inputs]
        try:
            async with asyncio.TaskGroup() as group:  # one failure cancels the other inputs
                tasks = [group.create_task(self.data.predict(name, version, job)) for job in jobs]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        responses = [task.result() for task in tasks]
        for response in responses:
            if response.status >= 400:
                text = response.body.decode("utf-8", "replace")
                raise ServeError(text or f"The handler answered {response.status}", status=response.status)
        outputs = [to_output_tensor(out, resp) for out, resp in zip(output_names(request), responses, strict=True)]
        return InferResponse(
            model_name=name, model_version=entry.version, id=request.id, outputs=outputs, parameters={}
        )


def _tensor_metadata(value: Any) -> list[dict[str, Any]]:
    out = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            shape = item.get("shape")
            out.append(
                {
                    "name": item["name"],
                    "datatype": str(item.get("datatype", "")),
                    "shape": [int(d) for d in shape] if isinstance(shape, list) else [],
                }
            )
    return out
