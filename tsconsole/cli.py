"""The ``tsconsole`` command.

Subcommands are dispatched by name, so each keeps its own flags exactly as the TorchServe tool it
replaces defines them (``tsconsole archive`` takes torch-model-archiver's flags unchanged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tsconsole import __version__


def _archive(argv: Sequence[str]) -> int:
    from archiver.cli import main as archive_main

    return archive_main(argv)


def _serve(argv: Sequence[str]) -> int:
    from server.__main__ import main as serve_main

    return serve_main(argv, prog="tsconsole serve")


def _start(argv: Sequence[str]) -> int:
    from server.config import ConfigError
    from server.launcher import parse_server_args, server_settings
    from tsconsole import daemon

    args = parse_server_args(argv, "tsconsole start")
    if args.foreground:
        return _serve(argv)
    try:
        settings = server_settings(args)
    except ConfigError as exc:
        print(f"tsconsole start: error: {exc}", file=sys.stderr)
        return 2
    return daemon.start(list(argv), settings)


def _stop(argv: Sequence[str]) -> int:
    from tsconsole import daemon

    argparse.ArgumentParser(prog="tsconsole stop", description="Stop the background server.").parse_args(argv)
    return daemon.stop()


def _status(argv: Sequence[str]) -> int:
    from tsconsole import daemon

    argparse.ArgumentParser(prog="tsconsole status", description="Is the background server running?").parse_args(argv)
    return daemon.status()


def _predict(argv: Sequence[str]) -> int:
    from tsconsole.predict import main as predict_main

    return predict_main(argv)


# ---- the console -------------------------------------------------------------------------------------


def _console(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="tsconsole", description="The terminal console of a tsconsole (or TorchServe) model server."
    )
    _address_flags(p, inference=True, metrics=True)
    p.add_argument("--read-only", action="store_true", help="hide every action that changes the server")
    p.add_argument(
        "--no-start", dest="offer_start", action="store_false",
        help="do not offer on its own to start a local server when none answers (c still starts one)",
    )  # fmt: skip
    args = p.parse_args(argv)
    from tsconsole.app import run
    from tsconsole.connection import endpoints_from

    endpoints = endpoints_from(
        args.inference, args.management, args.metrics, token=args.token, inference_token=args.inference_token
    )
    return run(endpoints, read_only=args.read_only, offer_start=args.offer_start)


# ---- scripting: the console's actions from the shell ------------------------------------------------


def _address_flags(p: argparse.ArgumentParser, *, inference: bool = False, metrics: bool = False) -> None:
    if inference:
        p.add_argument("--inference", metavar="URL", help="inference API address (default: the local server)")
    p.add_argument("--management", metavar="URL", help="management API address (default: the local server)")
    if metrics:
        p.add_argument("--metrics", metavar="URL", help="metrics API address (default: the local server)")
    p.add_argument(
        "--token", metavar="KEY",
        help="the server's management key (default: $TSCONSOLE_TOKEN, or the local server's key_file.json)",
    )  # fmt: skip
    if inference:
        p.add_argument(
            "--inference-token", metavar="KEY",
            help="its inference key (default: $TSCONSOLE_INFERENCE_TOKEN, else the management key)",
        )  # fmt: skip


def _call(args: argparse.Namespace, request: Callable[[Any], Awaitable[Any]]) -> tuple[int, Any]:
    """Run one request with a client for ``args.management``; (0, answer) or (1, None) after printing why."""
    from tsconsole.client import ApiError, Client, Unreachable
    from tsconsole.connection import endpoints_from, is_auth_error, refused_hint

    async def go() -> Any:
        async with Client(endpoints_from(management=args.management, token=args.token)) as client:
            return await request(client)

    try:
        return 0, asyncio.run(go())
    except ApiError as exc:
        print(f"tsconsole: {exc.message}", file=sys.stderr)
        if is_auth_error(exc):
            print(f"tsconsole: {refused_hint()}", file=sys.stderr)
    except Unreachable as exc:
        print(f"tsconsole: {exc}", file=sys.stderr)
    return 1, None


def _print_status(code: int, answer: Any) -> int:
    if code == 0:
        print(answer.get("status", json.dumps(answer)) if isinstance(answer, dict) else answer)
    return code


def _models(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="tsconsole models", description="List every registered model version.")
    _address_flags(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    from tsconsole.pollers import fetch_models

    code, snapshot = _call(args, fetch_models)
    if code:
        return code
    rows = [
        {
            "name": m.name,
            "version": m.version,
            "default": m.is_default,
            "workers": {"ready": m.workers_ready, "total": m.workers_total, "min": m.min_workers, "max": m.max_workers},
            "status": m.status,
            "batchSize": m.batch_size,
            "maxBatchDelay": m.max_batch_delay,
            "queue": m.queue,
            "url": m.url,
        }
        for m in snapshot.models
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "VERSION", "DEFAULT", "WORKERS", "STATUS")] + [
        (r["name"], r["version"], "*" if r["default"] else "",
         f"{r['workers']['ready']}/{r['workers']['total']}", r["status"])
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _register(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="tsconsole register", description="Register a model archive (a name in the model store, or a URL)."
    )
    p.add_argument("url", metavar="URL", help="archive file name in the server's model store, or its URL")
    p.add_argument("--name", help="model name (default: the archive's)")
    p.add_argument("--initial-workers", type=int, metavar="N", help="workers to start")
    p.add_argument("--batch-size", type=int, metavar="N", help="inference batch size")
    p.add_argument("--max-batch-delay", type=int, metavar="MS", help="longest wait to fill a batch (ms)")
    p.add_argument(
        "--sync", action=argparse.BooleanOptionalAction, default=None,
        help="wait until the workers are up (server default: yes)",
    )  # fmt: skip
    _address_flags(p)
    args = p.parse_args(argv)
    params = {
        "model_name": args.name,
        "initial_workers": args.initial_workers,
        "batch_size": args.batch_size,
        "max_batch_delay": args.max_batch_delay,
        "synchronous": args.sync,
    }
    return _print_status(*_call(args, lambda c: c.register(args.url, **params)))


def _scale(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="tsconsole scale", description="Set the number of workers of a model.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("min_workers", metavar="MIN", type=int, help="minimum workers")
    p.add_argument("max_workers", metavar="MAX", type=int, nargs="?", help="maximum workers (default: MIN)")
    p.add_argument("--version", help="model version (default: the default version)")
    p.add_argument("--sync", action="store_true", help="wait until the workers are up or down")
    _address_flags(p)
    args = p.parse_args(argv)
    return _print_status(
        *_call(
            args,
            lambda c: c.scale(
                args.model, args.min_workers, args.max_workers, version=args.version, synchronous=args.sync
            ),
        )
    )


def _unregister(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="tsconsole unregister", description="Unregister a model (version).")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--version", help="model version (default: the default version)")
    _address_flags(p)
    args = p.parse_args(argv)
    return _print_status(*_call(args, lambda c: c.unregister(args.model, args.version)))


def _set_default(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="tsconsole set-default", description="Set the default version of a model.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("version", metavar="VERSION")
    _address_flags(p)
    args = p.parse_args(argv)
    return _print_status(*_call(args, lambda c: c.set_default(args.model, args.version)))


def _logs(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="tsconsole logs", description="Print a server log file's last lines, or follow it (-f), like tail."
    )
    p.add_argument("name", nargs="?", default="ts_log", help="ts_log (default), model_log, access_log, ts_metrics…")
    p.add_argument("-n", "--lines", type=int, default=50, help="how many of the last lines (default 50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    _address_flags(p)
    args = p.parse_args(argv)

    async def follow(client: Any) -> None:
        async for line in client.follow_log(args.name, lines=args.lines):
            print(line, flush=True)

    if not args.follow:
        code, lines = _call(args, lambda c: c.log_tail(args.name, args.lines))
        if code == 0:
            print("\n".join(lines))
        return code
    try:
        return _call(args, follow)[0]
    except KeyboardInterrupt:
        return 0


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "console": (_console, "open the terminal console (the default; --read-only, --management URL…)"),
    "serve": (_serve, "run the model server in the foreground (torchserve flags; Ctrl-C stops it)"),
    "start": (_start, "start the model server in the background (torchserve --start)"),
    "stop": (_stop, "stop the background server and its workers (torchserve --stop)"),
    "status": (_status, "show whether the background server runs, and its health"),
    "predict": (_predict, "send one inference request (like curl -T FILE)"),
    "archive": (_archive, "build, inspect or unpack model (.mar) and workflow (.war) archives"),
    "models": (_models, "list the registered model versions (--json)"),
    "register": (_register, "register a model archive: URL [--name --initial-workers --batch-size …]"),
    "scale": (_scale, "scale a model's workers: MODEL MIN [MAX] [--version --sync]"),
    "unregister": (_unregister, "unregister a model: MODEL [--version]"),
    "set-default": (_set_default, "set a model's default version: MODEL VERSION"),
    "logs": (_logs, "print or follow (-f) a server log: [NAME] [-n LINES]"),
}


def usage() -> str:
    lines = [
        "usage: tsconsole [--read-only] [--inference URL] [--management URL] [--metrics URL]",
        "       tsconsole <command> [options]",
        "",
        "A TorchServe-compatible model server and its console. Without a command, the console opens.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<12} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `tsconsole <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if not argv or (argv[0].startswith("--") and argv[0] != "--version"):
        return _console(argv)
    if argv[0] == "--version":
        print(f"tsconsole {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"tsconsole: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return command[0](argv[1:])
