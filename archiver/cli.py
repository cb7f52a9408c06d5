"""``tsconsole archive``: a drop-in for torch-model-archiver and torch-workflow-archiver.

    tsconsole archive --model-name NAME --version V --handler H [torch-model-archiver flags]
    tsconsole archive workflow --workflow-name NAME --spec-file S --handler H [...]
    tsconsole archive --inspect X.mar [--json]
    tsconsole archive --unpack X.mar [--export-path DIR]

Errors are printed as ``ERROR - <message>`` (torch-model-archiver's wording) and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from archiver.errors import ArchiverError
from archiver.extract import extract_archive
from archiver.manifest import RUNTIMES, ModelManifest
from archiver.mar import ModelArchiveConfig, build_model_archive
from archiver.progress import human_size, terminal_progress
from archiver.reader import ArchiveInfo, inspect_archive
from archiver.workflow import WorkflowArchiveConfig, build_workflow_archive

log = logging.getLogger("archiver")
MODEL_REQUIRED = ("model_name", "handler", "version")


def model_parser(prog: str = "tsconsole archive") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Build a TorchServe model archive (.mar), the same as torch-model-archiver 0.12. "
        "Also: `workflow` for .war archives, --inspect and --unpack for existing archives.",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    # Required for building, but not for --inspect / --unpack: checked in main().
    p.add_argument("--model-name", help="Exported model name; the archive is <model-name>.mar")
    p.add_argument("--serialized-file", help="A .pt/.pth state_dict or TorchScript file, .onnx, ...")
    p.add_argument("--model-file", help="Python file with the model class (eager mode)")
    p.add_argument("--handler", help="A built-in handler name or a handler file (x.py, x.py:fn)")
    p.add_argument("--extra-files", help="Comma-separated files, folders (their contents) or globs")
    p.add_argument("--runtime", default="python", choices=list(RUNTIMES), help='Default "python"')
    p.add_argument("--export-path", default=None, help="Existing folder for the output (default: .)")
    p.add_argument(
        "--archive-format",
        default="default",
        choices=["tgz", "no-archive", "zip-store", "default"],
        help='"default" .mar (deflated zip), "zip-store" .mar (stored), "tgz" .tar.gz, "no-archive" a folder',
    )
    p.add_argument("-f", "--force", action="store_true", help="Overwrite an existing archive")
    p.add_argument("-v", "--version", help="Model's version")
    p.add_argument("-r", "--requirements-file", help="requirements.txt with the model's Python packages")
    p.add_argument("-c", "--config-file", help="model-config.yaml (batch size, workers, handler settings)")
    p.add_argument("--inspect", metavar="ARCHIVE", help="Show an archive's manifest and files, unpack nothing")
    p.add_argument("--unpack", metavar="ARCHIVE", help="Safely unpack an archive into <export-path>/<model-name>/")
    p.add_argument("--json", action="store_true", help="With --inspect: print JSON")
    return p


def workflow_parser(prog: str = "tsconsole archive workflow") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Build a TorchServe workflow archive (.war), the same as torch-workflow-archiver.",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--workflow-name", required=True, help="Exported workflow name; the file is <name>.war")
    p.add_argument("--spec-file", required=True, help="The workflow DAG specification (.yaml)")
    p.add_argument("--handler", help="Python file with the workflow's functions")
    p.add_argument("--export-path", default=None, help="Existing folder for the output (default: .)")
    p.add_argument("-f", "--force", action="store_true", help="Overwrite an existing archive")
    p.add_argument("--extra-files", help="Comma-separated extra files")
    return p


def describe(info: ArchiveInfo) -> str:
    """The human-readable --inspect report."""
    m = info.manifest
    fmt = {"zip": "ZIP", "tgz": "tar.gz", "directory": "folder"}[info.format]
    lines = [
        f"Archive     {info.path}  ({fmt}, {human_size(info.packed_bytes)} packed, "
        f"{human_size(info.unpacked_bytes)} unpacked, {len(info.files)} files)"
    ]
    if isinstance(m, ModelManifest):
        handler = m.handler + (" (built-in)" if m.handler_is_builtin else "")
        rows = [
            ("Model", m.model_name),
            ("Version", m.model_version),
            ("Handler", handler),
            ("Runtime", m.runtime),
            ("Serialized", m.serialized_file),
            ("Model file", m.model_file),
            ("Requirements", m.requirements_file),
            ("Config", m.config_file),
        ]
    else:
        rows = [("Workflow", m.workflow_name), ("Spec file", m.spec_file), ("Handler", m.handler)]
    rows += [("Created", m.created_on), ("Archiver", m.archiver_version)]
    lines += [f"{k:<12}{v}" for k, v in rows if v]
    lines += [f"Warning     {w}" for w in info.warnings]
    lines.append("")
    lines.append(f"{'size':>12}  {'packed':>12}  name")
    for e in info.files:
        packed = "" if e.packed is None else human_size(e.packed)
        suffix = f" -> {e.target}" if e.target else ""
        lines.append(f"{human_size(e.size):>12}  {packed:>12}  {e.name}{suffix}")
    return "\n".join(lines)


def _run_with_progress(build, config):
    """Run a build with a terminal progress bar (shown only on a TTY, for big inputs)."""
    bars = []

    def factory(total: int, label: str):
        bar = terminal_progress(total, label)
        if bar is not None:
            bars.append(bar)
        return bar

    try:
        return build(config, progress=factory)
    finally:
        for bar in bars:
            bar.close()


def run_model(argv: Sequence[str]) -> int:
    parser = model_parser()
    args = parser.parse_args(argv)
    if args.inspect:
        info = inspect_archive(args.inspect)
        print(json.dumps(info.to_dict(), indent=2) if args.json else describe(info))
        return 0
    if args.unpack:
        source = inspect_archive(args.unpack)
        name = getattr(source.manifest, "model_name", None) or source.manifest.workflow_name
        dest = os.path.join(args.export_path or os.getcwd(), name)
        bar = terminal_progress(source.unpacked_bytes, name)
        try:
            info = extract_archive(args.unpack, dest, progress=bar)
        finally:
            if bar:
                bar.close()
        print(f"Unpacked {len(info.files)} files into {dest}")
        return 0
    missing = [
        f"--{n.replace('_', '-')}" if n != "version" else "-v/--version"
        for n in MODEL_REQUIRED
        if getattr(args, n) is None
    ]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    config = ModelArchiveConfig(
        model_name=args.model_name,
        handler=args.handler,
        version=args.version,
        serialized_file=args.serialized_file,
        model_file=args.model_file,
        extra_files=args.extra_files,
        runtime=args.runtime,
        export_path=args.export_path,
        archive_format=args.archive_format,
        force=args.force,
        requirements_file=args.requirements_file,
        config_file=args.config_file,
    )
    _run_with_progress(build_model_archive, config)
    return 0


def run_workflow(argv: Sequence[str]) -> int:
    args = workflow_parser().parse_args(argv)
    config = WorkflowArchiveConfig(
        workflow_name=args.workflow_name,
        spec_file=args.spec_file,
        handler=args.handler,
        export_path=args.export_path,
        extra_files=args.extra_files,
        force=args.force,
    )
    _run_with_progress(build_workflow_archive, config)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(levelname)s - %(message)s", stream=sys.stderr)
    try:
        if argv[:1] == ["workflow"]:
            return run_workflow(argv[1:])
        return run_model(argv)
    except ArchiverError as exc:
        log.error("%s", exc)
        return 1
