"""The ``tsconsole`` command.

Subcommands are dispatched by name, so each keeps its own flags exactly as the TorchServe tool it
replaces defines them (``tsconsole archive`` takes torch-model-archiver's flags unchanged).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

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


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "serve": (_serve, "run the model server in the foreground (torchserve flags; Ctrl-C stops it)"),
    "start": (_start, "start the model server in the background (torchserve --start)"),
    "stop": (_stop, "stop the background server and its workers (torchserve --stop)"),
    "status": (_status, "show whether the background server runs, and its health"),
    "predict": (_predict, "send one inference request (like curl -T FILE)"),
    "archive": (_archive, "build, inspect or unpack model (.mar) and workflow (.war) archives"),
}


def usage() -> str:
    lines = [
        "usage: tsconsole <command> [options]",
        "",
        "A TorchServe-compatible model server and its console.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `tsconsole <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"tsconsole {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"tsconsole: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return command[0](argv[1:])
