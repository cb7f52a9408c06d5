"""``tsconsole predict MODEL [FILE]``: one inference request from the shell, like ``curl -T FILE``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from tsconsole.client import Endpoints, split_socket
from tsconsole.connection import INFERENCE_TOKEN_ENV, refused_hint, with_token
from tsconsole.daemon import running


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tsconsole predict", description="Send one inference request to a model.")
    p.add_argument("model", help="model name")
    p.add_argument("file", nargs="?", help="file to send as the request body ('-' for standard input)")
    p.add_argument("--version", help="model version (default: the default version)")
    p.add_argument("--data", help="send this text instead of a file")
    p.add_argument("--content-type", default=None, help="Content-Type of the body (default: none)")
    p.add_argument("--url", help="inference address (default: the running server's, else http://127.0.0.1:8080)")
    p.add_argument("--explain", action="store_true", help="ask for an explanation instead of a prediction")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    p.add_argument("--token", metavar="KEY", help=f"the inference key (default: ${INFERENCE_TOKEN_ENV}, "
                   "${TOKEN_ENV}, or the local server's key_file.json)")  # fmt: skip
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if args.data is not None:
        body = args.data.encode()
    elif args.file == "-":
        body = sys.stdin.buffer.read()
    elif args.file:
        try:
            body = Path(args.file).read_bytes()
        except OSError as exc:
            print(f"tsconsole predict: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 2
    else:
        print("tsconsole predict: give a FILE, '-' or --data", file=sys.stderr)
        return 2
    record = running()
    base = args.url or (record.inference if record else "http://127.0.0.1:8080")
    base, socket = split_socket(base)
    transport = httpx.HTTPTransport(uds=socket) if socket else None
    path = f"/{'explanations' if args.explain else 'predictions'}/{args.model}"
    if args.version:
        path += f"/{args.version}"
    headers = {"Content-Type": args.content_type} if args.content_type else {}
    key = with_token(Endpoints(inference=base, management=base), inference_token=args.token).inference_token
    if key:
        headers["Authorization"] = f"Bearer {key}"
    start = time.perf_counter()
    try:
        with httpx.Client(transport=transport, timeout=args.timeout) as client:
            response = client.post(base.rstrip("/") + path, content=body, headers=headers)
    except httpx.HTTPError as exc:
        print(f"tsconsole predict: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    elapsed = (time.perf_counter() - start) * 1000
    sys.stdout.buffer.write(response.content)
    sys.stdout.flush()
    print(f"\n[{response.status_code} in {elapsed:.0f} ms]", file=sys.stderr)
    if b"InvalidKeyException" in response.content:
        print(f"tsconsole predict: {refused_hint()}", file=sys.stderr)
    return 0 if response.status_code < 400 else 1
