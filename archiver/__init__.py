"""Model (.mar) and workflow (.war) archives in TorchServe's format: build, inspect, safely extract.

This package knows archive formats and nothing else: no server, no UI.
"""

from archiver.errors import ArchiveInputError, ArchiverError, InvalidArchiveError, UnsafeArchiveError
from archiver.extract import extract_archive
from archiver.limits import Limits
from archiver.manifest import ModelManifest, WorkflowManifest
from archiver.mar import ModelArchiveConfig, build_model_archive
from archiver.reader import ArchiveInfo, inspect_archive
from archiver.workflow import WorkflowArchiveConfig, build_workflow_archive

__all__ = [
    "ArchiveInfo",
    "ArchiveInputError",
    "ArchiverError",
    "InvalidArchiveError",
    "Limits",
    "ModelArchiveConfig",
    "ModelManifest",
    "UnsafeArchiveError",
    "WorkflowArchiveConfig",
    "WorkflowManifest",
    "build_model_archive",
    "build_workflow_archive",
    "extract_archive",
    "inspect_archive",
]
