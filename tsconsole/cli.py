"""The ``tsconsole`` command.

Subcommands are dispatched by name, so each keeps its own flags exactly as the TorchServe tool it
replaces defines them (``tsconsole archive`` takes torch-model-archiver's flags unchanged).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from tsconsole import __version__


def _archive(argv: Sequence[str]) -> int:
    from archiver.cli import main as archive_main

    return archive_main(argv)


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
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
