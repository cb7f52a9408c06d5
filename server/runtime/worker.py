"""The worker process: ``python -m server.runtime.worker --sock PATH [--service module:Class]``.

Like TorchServe's ``model_service_worker.py`` (spec §7) the worker is the listening side:

1. bind and listen on the Unix socket ``PATH`` (a stale file there is replaced), print ``[PID]<pid>`` and
   ``Torch worker started.`` on stdout (flushed), accept exactly one connection (the frontend's);
2. receive a `Load`, build the service with ``Service.load(load)`` and answer with a `Reply`:
   200 ``"<model> loaded"``, or the load error's code and message, after which the worker exits (status 1);
3. answer every `Inference` with ``service.predict(inference)`` until the frontend closes the connection
   (end of stream: exit 0). A service with ``set_intermediate_sender(sender)`` gets a sender that writes
   intermediate replies (streaming, header ``ts_stream_next: true``) before ``predict`` returns the final one.

After the load and after each batch, the metrics the handler recorded (a service with ``metrics.drain()``,
like the handler library's) travel in the reply as TorchServe's ``[METRICS]`` lines (`Reply.metrics`), which
the frontend turns into its backend metrics (spec §3.3) as if they had been printed (TorchServe's workers
print them on stdout: a pipe write and read per request that this saves).

The service class defaults to ``server.handlers.service:HandlerService``; any class with the same two
methods can be given with ``--service`` (the tests use their own). When the service lives in the
``server.handlers`` package, ``server.handlers.compat.install()`` runs first so TorchServe handlers can
import ``ts.*``. Torch is never imported here: only the service does that (and it alone reads
``TSC_TORCH_THREADS``, which the pool puts in this process's environment).

Nothing but the two start lines goes to stdout from this module (handlers may print; the
frontend logs every other line); diagnostics go to stderr. The frontend owns the worker's life: SIGINT is
ignored (a Ctrl-C in the server's terminal must not kill workers behind its back), SIGTERM ends it, and so
does the end of the connection or the death of the parent process (checked every second).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from server.runtime import protocol
from server.runtime.messages import Inference, Load, Reply

DEFAULT_SERVICE = "server.handlers.service:HandlerService"
STARTED_LINE = "Torch worker started."
PARENT_CHECK_INTERVAL_S = 1.0


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def import_service(spec: str) -> Any:
    """The class named by ``module:Class``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--service must look like module:Class, got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _install_compat(service_spec: str) -> None:
    module_name = service_spec.partition(":")[0]
    if module_name == "server.handlers" or module_name.startswith("server.handlers."):
        from server.handlers.compat import install

        install()


def _load_error_reply(exc: BaseException) -> Reply:
    """A LoadError's code and message; anything else is an unexpected failure: 500 with its text."""
    code, message = getattr(exc, "code", None), getattr(exc, "message", None)
    if isinstance(code, int) and isinstance(message, str):
        return Reply(code, message)
    traceback.print_exception(exc, file=sys.stderr)
    return Reply(500, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _metric_lines(service: Any, hostname: str) -> list[str]:
    """The handler's metrics recorded since the last call, as TorchServe's ``[METRICS]`` lines: they travel in
    the Reply (the frontend logs and counts them as if printed on stdout)."""
    drain = getattr(getattr(service, "metrics", None), "drain", None)
    if not callable(drain):
        return []
    try:
        return [record.log_line(hostname) for record in drain()]
    except Exception as exc:  # metrics must never cost a prediction
        _log(f"Could not report the handler's metrics: {type(exc).__name__}: {exc}")
        return []


def _watch_parent(parent: int) -> None:
    """Exit when the process that started us is gone (we were re-parented), even in the middle of a load."""
    stop = threading.Event()
    while not stop.wait(PARENT_CHECK_INTERVAL_S):
        if os.getppid() != parent:
            _log("Frontend process is gone; worker exiting.")
            os._exit(1)


def _listen(path: str) -> socket.socket:
    if os.path.exists(path) or os.path.islink(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    return server


def serve(sock_path: str, service_spec: str = DEFAULT_SERVICE) -> int:
    """Run the worker on ``sock_path``; the process exit status is returned."""
    listener = _listen(sock_path)
    print(f"[PID]{os.getpid()}", flush=True)
    print(STARTED_LINE, flush=True)
    try:
        conn, _ = listener.accept()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock_path)

    with conn:
        first = protocol.recv_message(conn)
        if first is None:
            return 0
        if not isinstance(first, Load):
            _log(f"Expected a Load message first, got {type(first).__name__}.")
            return 1
        try:
            service_cls = import_service(service_spec)
            _install_compat(service_spec)
            service = service_cls.load(first)
        except Exception as exc:
            protocol.send_message(conn, _load_error_reply(exc))
            return 1
        hostname = socket.gethostname()
        loaded = Reply(200, f"{first.model_name} loaded", metrics=_metric_lines(service, hostname))
        protocol.send_message(conn, loaded)
        set_sender = getattr(service, "set_intermediate_sender", None)
        if callable(set_sender):  # streaming handlers send intermediate replies before the final one
            set_sender(lambda reply: protocol.send_message(conn, reply))

        while (msg := protocol.recv_message(conn)) is not None:
            if not isinstance(msg, Inference):
                _log(f"Expected an Inference message, got {type(msg).__name__}.")
                return 1
            try:
                reply = service.predict(msg)
            except Exception as exc:  # the service should never raise; keep the worker alive if it does
                traceback.print_exception(exc, file=sys.stderr)
                reply = Reply(503, "Prediction failed")
            reply.metrics += _metric_lines(service, hostname)
            protocol.send_message(conn, reply)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.runtime.worker", description="A model worker.")
    parser.add_argument("--sock", required=True, help="Unix socket path to listen on")
    parser.add_argument("--service", default=DEFAULT_SERVICE, help="service class as module:Class")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    try:
        return serve(args.sock, args.service)
    except protocol.ProtocolError as exc:
        _log(f"Protocol error, worker exiting: {exc}")
        return 1
    except (BrokenPipeError, ConnectionResetError):
        _log("Connection to the frontend lost, worker exiting.")
        return 1


if __name__ == "__main__":
    sys.exit(main())
