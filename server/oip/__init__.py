"""Open Inference Protocol (KServe v2): tensor types and the REST/gRPC codecs the front doors call.

`tensors` holds the protocol-neutral types, `rest` and `grpc_codec` translate the wire formats, and
`handler_rows` maps a tensor to a TorchServe handler request and a handler's answer back to a tensor.
"""
