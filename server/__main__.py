"""``python -m server [torchserve flags]``: the model server in the foreground (what ``tsconsole serve`` runs)."""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
from collections.abc import Callable, Sequence

from server.app import ListenError, serve
from server.config import ConfigError
from server.launcher import parse_server_args, server_settings
from server.telemetry.logs import setup_logging, stop_logging


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop (libuv: a faster loop for the same asyncio code), unless ``TSCONSOLE_LOOP=asyncio``
    asks for the standard one; None means asyncio's default."""
    if os.environ.get("TSCONSOLE_LOOP", "uvloop").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # not installed (a platform without wheels): the standard loop serves the same
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None, *, prog: str = "tsconsole serve", console: bool | None = None) -> int:
    """Run the server in the foreground; log lines go to stdout too unless detached (TSCONSOLE_DETACHED=1)."""
    if console is None:
        console = os.environ.get("TSCONSOLE_DETACHED") != "1"
    args = parse_server_args(sys.argv[1:] if argv is None else argv, prog)
    try:
        settings = server_settings(args)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_location, console=console, metrics_location=settings.metrics_location)
    faulthandler.enable()  # a crash in native code (grpc, psutil, NVML) leaves every thread's stack on stderr
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve(settings, python=args.python))
    except ListenError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        stop_logging()
    return 0


if __name__ == "__main__":
    sys.exit(main())
