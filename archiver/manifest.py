"""MANIFEST.json of model (.mar) and workflow (.war) archives, exactly as TorchServe writes and reads it.

Written like torch-model-archiver 0.12.0 / torch-workflow-archiver 0.2.15: the same keys in the same
order, 2-space indent, no trailing newline. Read leniently where TorchServe is lenient (old keys are
ignored, a missing ``runtime`` means ``python``) and strictly where a bad value would only fail later.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from archiver.errors import InvalidArchiveError
from archiver.paths import member_name

ARCHIVER_VERSION = "0.12.0"
WORKFLOW_ARCHIVER_VERSION = "0.2.15"
MODEL_MANIFEST_PATH = "MAR-INF/MANIFEST.json"
WORKFLOW_MANIFEST_PATH = "WAR-INF/MANIFEST.json"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$"
RUNTIMES = ("python", "python3", "LSP")
# Built-in handler names torch-model-archiver does not copy into the archive, and what they serve.
BUILTIN_HANDLERS = {
    "base_handler": "anything",
    "text_classifier": "text",
    "image_classifier": "vision",
    "object_detector": "vision",
    "image_segmenter": "vision",
    "dali_image_classifier": "vision",
    "vllm_handler": "text",
    "trt_llm_handler": "text",
}
LSP_BUILTIN_HANDLERS = ("BaseHandler", "TorchScriptHandler")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_valid_name(name: str) -> bool:
    """Model and workflow names follow TorchServe's pattern (the output file is ``<name>.mar``)."""
    return re.match(NAME_PATTERN, name) is not None


def created_on_now() -> str:
    """``createdOn`` as TorchServe writes it: ``dd/MM/yyyy HH:mm:ss`` in local time."""
    return datetime.now().strftime("%d/%m/%Y %H:%M:%S")


def _text(section: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = section.get(key)
    if value is None:
        if required:
            raise InvalidArchiveError(f"{where} has no '{key}'")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidArchiveError(f"{where} '{key}' must be a non-empty string, not {value!r}")
    return value


def parse_manifest_json(raw: bytes, path: str) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArchiveError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArchiveError(f"{path} must hold a JSON object")
    return data


@dataclass(frozen=True)
class ModelManifest:
    """``MAR-INF/MANIFEST.json``."""

    model_name: str
    model_version: str
    handler: str
    runtime: str = "python"
    serialized_file: str | None = None
    model_file: str | None = None
    requirements_file: str | None = None
    config_file: str | None = None
    extensions: Any = None
    created_on: str | None = None
    archiver_version: str | None = ARCHIVER_VERSION
    description: str | None = None
    # True when the archive had no manifest and TorchServe's defaults were assumed.
    synthesized: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        model: dict[str, Any] = {"modelName": self.model_name}
        if self.serialized_file:
            model["serializedFile"] = self.serialized_file
        model["handler"] = self.handler
        if self.model_file:
            model["modelFile"] = self.model_file
        model["modelVersion"] = self.model_version
        if self.extensions:
            model["extensions"] = self.extensions
        if self.requirements_file:
            model["requirementsFile"] = self.requirements_file
        if self.config_file:
            model["configFile"] = self.config_file
        out: dict[str, Any] = {}
        if self.created_on is not None:
            out["createdOn"] = self.created_on
        if self.description is not None:
            out["description"] = self.description
        out["runtime"] = self.runtime
        out["model"] = model
        if self.archiver_version is not None:
            out["archiverVersion"] = self.archiver_version
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @property
    def referenced_files(self) -> dict[str, str]:
        """Manifest key -> archive member the key names (the handler only when it names a file)."""
        refs = {
            "serializedFile": self.serialized_file,
            "modelFile": self.model_file,
            "requirementsFile": self.requirements_file,
            "configFile": self.config_file,
        }
        return {k: v for k, v in refs.items() if v}

    @property
    def handler_module(self) -> str:
        """The handler without its ``:function`` suffix."""
        return self.handler.split(":", 1)[0]

    @property
    def handler_is_builtin(self) -> bool:
        if self.runtime == "LSP":
            return self.handler in LSP_BUILTIN_HANDLERS
        return self.handler_module in BUILTIN_HANDLERS

    @classmethod
    def synthesize(cls, model_name: str) -> ModelManifest:
        """What TorchServe assumes for an archive without a manifest."""
        return cls(
            model_name=model_name,
            model_version="1.0",
            handler="default_service_handler",
            created_on=None,
            archiver_version=None,
            synthesized=True,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = MODEL_MANIFEST_PATH) -> ModelManifest:
        """Validate a parsed manifest: required keys present, values sane, file names inside the archive."""
        runtime = data.get("runtime", "python")
        if runtime not in RUNTIMES:
            raise InvalidArchiveError(f"{where}: runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
        model = data.get("model")
        if not isinstance(model, dict):
            raise InvalidArchiveError(f"{where} has no 'model' section")
        section = f"{where} 'model'"
        name = _text(model, "modelName", section, required=True)
        version = _text(model, "modelVersion", section, required=False) or _text(
            model, "version", section, required=False
        )
        if version is None:
            raise InvalidArchiveError(f"{section} has no 'modelVersion'")
        handler = _text(model, "handler", section, required=True)
        files = {
            key: _text(model, key, section, required=False)
            for key in ("serializedFile", "modelFile", "requirementsFile", "configFile")
        }
        for key, value in files.items():
            if value is not None:
                files[key] = member_name(value, what=f"{where} '{key}'")
        assert name is not None and handler is not None
        if runtime != "LSP" and not _handler_is_file(handler) and not _MODULE_NAME.match(handler.split(":", 1)[0]):
            raise InvalidArchiveError(f"{section} 'handler' {handler!r} is neither a file nor a module name")
        if _handler_is_file(handler):
            member_name(handler.split(":", 1)[0], what=f"{where} 'handler'")
        description = data.get("description")
        return cls(
            model_name=name,
            model_version=version,
            handler=handler,
            runtime=runtime,
            serialized_file=files["serializedFile"],
            model_file=files["modelFile"],
            requirements_file=files["requirementsFile"],
            config_file=files["configFile"],
            extensions=model.get("extensions"),
            created_on=data.get("createdOn") if isinstance(data.get("createdOn"), str) else None,
            archiver_version=data.get("archiverVersion") if isinstance(data.get("archiverVersion"), str) else None,
            description=description if isinstance(description, str) else None,
        )


def _handler_is_file(handler: str) -> bool:
    module = handler.split(":", 1)[0]
    return module.endswith((".py", ".so", ".dylib")) or "/" in module or "\\" in module


@dataclass(frozen=True)
class WorkflowManifest:
    """``WAR-INF/MANIFEST.json``."""

    workflow_name: str
    spec_file: str
    handler: str
    created_on: str | None = None
    archiver_version: str | None = WORKFLOW_ARCHIVER_VERSION

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created_on is not None:
            out["createdOn"] = self.created_on
        out["workflow"] = {
            "workflowName": self.workflow_name,
            "specFile": self.spec_file,
            "handler": self.handler,
        }
        if self.archiver_version is not None:
            out["archiverVersion"] = self.archiver_version
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @property
    def referenced_files(self) -> dict[str, str]:
        return {"specFile": self.spec_file, "handler": self.handler}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = WORKFLOW_MANIFEST_PATH) -> WorkflowManifest:
        """TorchServe requires workflowName, archiverVersion and createdOn; the files must be inside."""
        workflow = data.get("workflow")
        if not isinstance(workflow, dict):
            raise InvalidArchiveError(f"{where} has no 'workflow' section")
        section = f"{where} 'workflow'"
        name = _text(workflow, "workflowName", section, required=True)
        spec = _text(workflow, "specFile", section, required=True)
        handler = _text(workflow, "handler", section, required=True)
        version = _text(data, "archiverVersion", where, required=True)
        created = _text(data, "createdOn", where, required=True)
        assert name is not None and spec is not None and handler is not None
        return cls(
            workflow_name=name,
            spec_file=member_name(spec, what=f"{where} 'specFile'"),
            handler=member_name(handler, what=f"{where} 'handler'"),
            created_on=created,
            archiver_version=version,
        )
