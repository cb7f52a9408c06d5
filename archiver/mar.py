"""Build model archives (.mar) exactly as torch-model-archiver 0.12.0 does."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from archiver.errors import ArchiveInputError
from archiver.inputs import ArchiveInputs
from archiver.manifest import (
    BUILTIN_HANDLERS,
    LSP_BUILTIN_HANDLERS,
    MODEL_MANIFEST_PATH,
    NAME_PATTERN,
    RUNTIMES,
    ModelManifest,
    created_on_now,
    is_valid_name,
)
from archiver.progress import ProgressCallback
from archiver.writer import FORMAT_SUFFIXES, write_archive

log = logging.getLogger("archiver")

ProgressFactory = Callable[[int, str], ProgressCallback | None]
"""Given the total bytes and a label, returns a progress callback (or None for no progress)."""


@dataclass
class ModelArchiveConfig:
    """The same fields and defaults as ``model_archiver.ModelArchiverConfig``."""

    model_name: str
    handler: str
    version: str
    serialized_file: str | None = None
    model_file: str | None = None
    extra_files: str | None = None
    runtime: str = "python"
    export_path: str | None = None  # None: the current directory
    archive_format: str = "default"
    force: bool = False
    requirements_file: str | None = None
    config_file: str | None = None

    def manifest(self) -> ModelManifest:
        def base(path: str | None) -> str | None:
            return path.split("/")[-1] if path else None

        return ModelManifest(
            model_name=self.model_name,
            model_version=self.version,
            handler=os.path.basename(self.handler),
            runtime=self.runtime,
            serialized_file=os.path.basename(self.serialized_file) if self.serialized_file else None,
            model_file=base(self.model_file),
            requirements_file=base(self.requirements_file),
            config_file=os.path.basename(self.config_file) if self.config_file else None,
            created_on=created_on_now(),
        )


def handler_source(handler: str, runtime: str) -> str | None:
    """The file torch-model-archiver copies for ``--handler``, or None for a built-in handler."""
    module = handler.split(":", 1)[0]
    if runtime == "LSP":
        if handler in LSP_BUILTIN_HANDLERS:
            return None
        return module + (".dylib" if sys.platform.startswith("darwin") else ".so")
    if handler in BUILTIN_HANDLERS:
        return None
    return module if module.endswith(".py") else module + ".py"


def archive_path(export_path: str, name: str, archive_format: str) -> str:
    return os.path.join(export_path, name + FORMAT_SUFFIXES[archive_format])


def check_output(name: str, export_path: str, output: str, force: bool, *, kind: str, what: str) -> None:
    """The three checks both archivers make before copying anything, with their messages."""
    if not is_valid_name(name):
        raise ArchiveInputError(
            f"{kind.capitalize()} name contains special characters.\n"
            f"The allowed regular expression filter for {kind} name is: {NAME_PATTERN}"
        )
    if not os.path.isdir(os.path.abspath(export_path)):
        raise ArchiveInputError(
            f"Given export-path {export_path} is not a directory. Point to a valid export-path directory."
        )
    if os.path.lexists(output):
        if not force:
            raise ArchiveInputError(
                f"{output} already exists.\n"
                f"Please specify --force/-f option to overwrite the {what} output file.\n"
                "See -h/--help for more details."
            )
        log.warning("Overwriting %s ...", output)


def collect_model_inputs(config: ModelArchiveConfig) -> ArchiveInputs:
    """Every input file, in torch-model-archiver's copy order (later names replace earlier ones)."""
    inputs = ArchiveInputs(reserved=(MODEL_MANIFEST_PATH,))
    if config.model_file:
        inputs.add_file(config.model_file, "--model-file")
    if config.serialized_file:
        inputs.add_file(config.serialized_file, "--serialized-file")
    handler_file = handler_source(config.handler, config.runtime)
    if handler_file:
        inputs.add_file(handler_file, "--handler")
    if config.extra_files:
        inputs.add_extra_files(config.extra_files)
    if config.requirements_file:
        inputs.add_file(config.requirements_file, "--requirements-file")
    if config.config_file:
        inputs.add_file(config.config_file, "--config-file")
    return inputs


def build_model_archive(config: ModelArchiveConfig, progress: ProgressFactory | None = None) -> Path:
    """Build ``<export-path>/<model-name>.mar`` (or .tar.gz, or a folder); returns its path."""
    if config.runtime not in RUNTIMES:
        raise ArchiveInputError(f"Invalid runtime {config.runtime!r}: choose from {', '.join(RUNTIMES)}")
    if config.archive_format not in FORMAT_SUFFIXES:
        raise ArchiveInputError(
            f"Invalid archive format {config.archive_format!r}: choose from {', '.join(FORMAT_SUFFIXES)}"
        )
    manifest = config.manifest()
    export_path = config.export_path if config.export_path is not None else os.getcwd()
    output = archive_path(export_path, config.model_name, config.archive_format)
    check_output(config.model_name, export_path, output, config.force, kind="model", what="model archive")
    inputs = collect_model_inputs(config)
    inputs.without(Path(output))
    callback = progress(inputs.total_bytes, config.model_name) if progress else None
    write_archive(
        Path(output),
        inputs.members,
        MODEL_MANIFEST_PATH,
        manifest.to_json(),
        config.archive_format,
        top_dir=config.model_name,
        progress=callback,
    )
    log.info("Successfully exported model %s to file %s", config.model_name, export_path)
    return Path(output)
