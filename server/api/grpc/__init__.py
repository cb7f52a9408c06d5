"""TorchServe's gRPC front doors, in the frontend process (grpc.aio), over the same core as REST.

* inference (``grpc_inference_address:grpc_inference_port``, default 127.0.0.1:7070):
  ``org.pytorch.serve.grpc.inference.InferenceAPIsService`` (`inference`) and the Open Inference Protocol's
  ``GRPCInferenceService`` under TorchServe's package and KServe's standard ``inference`` package (`oip`);
* management (default 127.0.0.1:7071): ``org.pytorch.serve.grpc.management.ManagementAPIsService``
  (`management`).

The messages are generated from ``proto/*.proto`` (our own files, wire-compatible with TorchServe's) by
``make protos``; the generated modules are committed. Servicers only translate: requests into the core's
arguments, its answers and errors (`status.abort`) into messages and status codes. `server` runs the two
servers and writes TorchServe's access-log line for every call.
"""
