"""Regenerate the gRPC code under server/api/grpc/proto/ from the .proto files beside it (``make protos``).

The generated modules are committed, so installing or testing tsconsole never needs grpcio-tools; run this
after changing a .proto file. Imports in the generated code are absolute (``server.api.grpc.proto``) because
the files are compiled from the repository root.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "server" / "api" / "grpc" / "proto"


def main() -> int:
    from google.rpc import status_pb2  # googleapis-common-protos ships google/rpc/status.proto
    from grpc_tools import protoc  # dev dependency

    well_known = str(resources.files("grpc_tools") / "_proto")
    googleapis = str(Path(status_pb2.__file__).resolve().parent.parent.parent)
    protos = sorted(str(p.relative_to(ROOT)) for p in PROTO_DIR.glob("*.proto"))
    args = ["protoc", f"-I{ROOT}", f"-I{googleapis}", f"-I{well_known}"]
    args += [f"--python_out={ROOT}", f"--pyi_out={ROOT}", f"--grpc_python_out={ROOT}", *protos]
    code = protoc.main(args)
    if code == 0:
        print("generated:", ", ".join(Path(p).stem for p in protos))
    return code


if __name__ == "__main__":
    sys.exit(main())
