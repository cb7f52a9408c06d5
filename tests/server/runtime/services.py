"""Test stand-ins for the handler library's ``HandlerService``, loaded in real worker processes.

``EchoService`` answers every request with a JSON body naming the request and the worker that ran it. The
Load message's ``handler`` steers the load, and a request's first input steers its batch:

* handler ``echo`` (anything else): load normally; ``reverse``: return the responses in reverse order;
  ``fail_load:<code>:<message>``: raise a LoadError-like exception; ``sleep_load:<s>``: sleep, then load.
* input ``crash``: ``os._exit(3)``; ``kill9``: SIGKILL itself (looks OOM-killed); ``sleep:<s>``: sleep;
  ``stubborn:<s>``: ignore SIGTERM, then sleep; ``fail:<code>:<message>``: whole-batch failure;
  ``print:<text>``: print ``text`` to stdout and stderr;
  ``raise``: raise from predict (the worker must survive it); ``stream:<n>``: the whole batch streams: n
  intermediate replies (bodies ``<id>:part<i>``, header ``ts_stream_next: true``), then the final one
  (``<id>:done``, ``ts_stream_next: false``); anything else: echoed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable

from server.runtime.messages import Inference, Load, Reply, Response


class LoadFailed(Exception):
    """Shaped like the handler library's LoadError: ``.code`` and ``.message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EchoService:
    def __init__(self, load: Load) -> None:
        self.load_msg = load
        self.reverse = load.handler == "reverse"
        self.sender: Callable[[Reply], None] | None = None

    def set_intermediate_sender(self, sender: Callable[[Reply], None] | None) -> None:
        self.sender = sender

    @classmethod
    def load(cls, msg: Load) -> EchoService:
        print(f"echo service loading {msg.model_name}")
        print(f"echo service stderr {msg.model_name}", file=sys.stderr)
        kind, _, arg = msg.handler.partition(":")
        if kind == "fail_load":
            code, _, message = arg.partition(":")
            raise LoadFailed(int(code), message)
        if kind == "sleep_load":
            time.sleep(float(arg))
        return cls(msg)

    def predict(self, msg: Inference) -> Reply:
        first = msg.requests[0].inputs[0].value if msg.requests and msg.requests[0].inputs else b""
        if first.startswith(b"stream:"):
            return self.stream(msg, int(first.partition(b":")[2]))
        n = len(msg.requests)
        responses: list[Response] = []
        for request in msg.requests:
            data = request.inputs[0].value if request.inputs else b""
            text = data.decode("utf-8", errors="replace")
            command, _, arg = text.partition(":")
            if command == "crash":
                os._exit(3)
            elif command == "kill9":
                os.kill(os.getpid(), signal.SIGKILL)
            elif command == "sleep":
                time.sleep(float(arg))
            elif command == "stubborn":  # ignore SIGTERM, then sleep
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                time.sleep(float(arg))
            elif command == "fail":
                code, _, message = arg.partition(":")
                return Reply(int(code), message)
            elif command == "print":
                print(arg)
                print(arg, file=sys.stderr)
            elif command == "raise":
                raise RuntimeError("predict raised")
            body = {
                "id": request.request_id,
                "input": text,
                "batch": n,
                "pid": os.getpid(),
                "gpu_id": self.load_msg.gpu_id,
                "batch_size": self.load_msg.batch_size,
                "model_version": self.load_msg.model_version,
                "threads": os.environ.get("TSC_TORCH_THREADS"),
                "batch_threads": msg.threads,
                "cwd": os.getcwd(),
                "headers": request.headers,
            }
            responses.append(
                Response(
                    request.request_id,
                    json.dumps(body).encode(),
                    content_type="application/json",
                    headers=[("x-batch", str(n))],
                )
            )
        if self.reverse:
            responses.reverse()
        return Reply(200, "Prediction success", responses)

    def stream(self, msg: Inference, parts: int) -> Reply:
        assert self.sender is not None, "the worker did not set an intermediate sender"
        ids = [request.request_id for request in msg.requests]

        def reply(message: str, suffix: str, more: str) -> Reply:
            headers = [("ts_stream_next", more)]
            return Reply(200, message, [Response(r, f"{r}:{suffix}".encode(), headers=headers) for r in ids])

        for i in range(parts):
            self.sender(reply("Intermediate", f"part{i}", "true"))
            time.sleep(0.01)
        return reply("Prediction success", "done", "false")
