"""Build workflow archives (.war) exactly as torch-workflow-archiver 0.2.15 does."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from archiver.errors import ArchiveInputError
from archiver.inputs import ArchiveInputs
from archiver.manifest import WORKFLOW_MANIFEST_PATH, WorkflowManifest, created_on_now
from archiver.mar import ProgressFactory, check_output
from archiver.writer import write_archive

log = logging.getLogger("archiver")


@dataclass
class WorkflowArchiveConfig:
    """The flags of torch-workflow-archiver."""

    workflow_name: str
    spec_file: str
    handler: str | None
    export_path: str | None = None  # None: the current directory
    extra_files: str | None = None
    force: bool = False

    def manifest(self) -> WorkflowManifest:
        if not self.handler:
            # torch-workflow-archiver crashes here with an AttributeError; we say what is missing.
            raise ArchiveInputError("--handler is required: the Python file with the workflow's functions")
        return WorkflowManifest(
            workflow_name=self.workflow_name,
            spec_file=self.spec_file.split("/")[-1],
            handler=self.handler.split("/")[-1],
            created_on=created_on_now(),
        )


def build_workflow_archive(config: WorkflowArchiveConfig, progress: ProgressFactory | None = None) -> Path:
    """Build ``<export-path>/<workflow-name>.war``; returns its path."""
    manifest = config.manifest()
    export_path = config.export_path if config.export_path is not None else os.getcwd()
    output = os.path.join(export_path, f"{config.workflow_name}.war")
    check_output(config.workflow_name, export_path, output, config.force, kind="workflow", what="workflow archive")
    inputs = ArchiveInputs(reserved=(WORKFLOW_MANIFEST_PATH,))
    inputs.add_file(config.spec_file, "--spec-file")
    assert config.handler is not None
    inputs.add_file(config.handler, "--handler")
    if config.extra_files:
        inputs.add_extra_files(config.extra_files, folders=False)
    inputs.without(Path(output))
    callback = progress(inputs.total_bytes, config.workflow_name) if progress else None
    write_archive(Path(output), inputs.members, WORKFLOW_MANIFEST_PATH, manifest.to_json(), progress=callback)
    log.info("Successfully exported workflow %s to file %s", config.workflow_name, export_path)
    return Path(output)
