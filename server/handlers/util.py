"""``ts.utils.util``: helpers TorchServe handlers import, plus the module import rules of the worker."""

from __future__ import annotations

import enum
import functools
import importlib
import inspect
import itertools
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import yaml

logger = logging.getLogger(__name__)

CLEANUP_REGEX = re.compile("<.*?>|&([a-z0-9]+|#[0-9]{1,6}|#x[0-9a-f]{1,6});")
"""HTML tags and character entities (removed by the text handlers)."""

F = TypeVar("F", bound=Callable[..., Any])


class PT2Backend(enum.StrEnum):
    """torch.compile backends TorchServe accepts in ``pt2`` model-config options."""

    EAGER = "eager"
    AOT_EAGER = "aot_eager"
    INDUCTOR = "inductor"
    NVFUSER = "nvfuser"
    AOT_NVFUSER = "aot_nvfuser"
    AOT_CUDAGRAPHS = "aot_cudagraphs"
    OFI = "ofi"
    FX2TRT = "fx2trt"
    ONNXRT = "onnxrt"
    IPEX = "ipex"
    TORCHXLA_TRACE_ONCE = "torchxla_trace_once"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"
    HPU_BACKEND = "hpu_backend"


class PredictionException(Exception):
    """Raise from a handler to fail the whole batch with ``error_code`` and ``message`` (spec §6.3)."""

    def __init__(self, message: str, error_code: int = 500) -> None:
        self.message = message
        self.error_code = error_code
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.message} : {self.error_code}"


def list_classes_from_module(module: ModuleType, parent_class: type | None = None) -> list[type]:
    """The classes *defined* in ``module`` (not imported into it), optionally only subclasses of a parent."""
    classes = [
        member for _, member in inspect.getmembers(module, inspect.isclass) if member.__module__ == module.__name__
    ]
    if parent_class is not None:
        classes = [c for c in classes if issubclass(c, parent_class)]
    return classes


def check_valid_pt2_backend(backend: str) -> bool:
    if backend in {b.value for b in PT2Backend}:
        return True
    logger.warning("%s is not a supported backend", backend)
    return False


def load_label_mapping(mapping_file_path: str | os.PathLike[str]) -> dict[str, str] | None:
    """Read ``index_to_name.json``: ``{"<class index>": "label" | [..., "label"]}`` → ``{index: label}``.

    A list value contributes its last element; the older ``{"object_type_names": [...]}`` form is
    accepted. Returns None (with a warning) when the file does not exist.
    """
    if not os.path.isfile(mapping_file_path):
        logger.warning("%r is missing. Inference output will not include class name.", str(mapping_file_path))
        return None
    with open(mapping_file_path, encoding="utf-8") as f:
        mapping = json.load(f)
    if not isinstance(mapping, dict):
        raise ValueError('index->name JSON mapping should be in "class": "label" format.')
    names = mapping.get("object_type_names")
    if isinstance(names, list):
        return {str(i): name for i, name in enumerate(names)}
    out: dict[str, str] = {}
    for key, value in mapping.items():
        label = value[-1] if isinstance(value, list) and value else value
        if not isinstance(label, str):
            raise ValueError("labels in index->name mapping must be either str or List[str]")
        out[str(key)] = label
    return out


def map_class_to_label(
    probs: list[list[Any]],
    mapping: dict[str, str] | None = None,
    lbl_classes: Iterable[Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """One dict per row: ``{label: prob}``, label = ``mapping[str(class)]`` or ``str(class)``.

    ``lbl_classes`` gives the class index of each value (default: 0, 1, 2, ... per row). A class index
    the mapping does not know is reported as its index string.
    """
    if not isinstance(probs, list):
        raise TypeError("Convert classes to list before doing mapping")
    if mapping is not None and not isinstance(mapping, dict):
        raise TypeError("Mapping must be a dict")
    if lbl_classes is None:
        lbl_classes = itertools.repeat(range(len(probs[0]) if probs else 0), len(probs))

    def label(cls: Any) -> str:
        key = str(cls)
        return mapping.get(key, key) if mapping is not None else key

    return [
        {label(c): p for c, p in zip(classes, row, strict=False)}
        for classes, row in zip(lbl_classes, probs, strict=False)
    ]


def get_yaml_config(yaml_file_path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model-config YAML as a dict (an empty file gives ``{}``)."""
    with open(yaml_file_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(f"{os.fspath(yaml_file_path)}: the model config must be a YAML mapping")
    return config


def deprecated(
    version: Any, replacement: str = "", klass: type[Warning] = PendingDeprecationWarning
) -> Callable[[F], F]:
    """Mark a function deprecated: calling it warns with ``klass``."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            warnings.warn(f"{func.__name__} is deprecated in {version} and moved to {replacement}", klass, stacklevel=2)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# -- module import rules (ours) ----------------------------------------------------------------------


def add_to_sys_path(path: str) -> None:
    """Put ``path`` first on sys.path (once), as TorchServe's PYTHONPATH puts the model dir first."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
        importlib.invalidate_caches()


def import_model_dir_module(name: str, model_dir: str | None) -> ModuleType:
    """``importlib.import_module(name)``, preferring ``<model_dir>/<name>.py`` over a cached same-named module.

    A worker loads one model, but a long-lived process (tests, a reloaded worker) may already hold an
    unrelated module of the same name (``model``, ``handler``) in sys.modules; it is dropped when the
    model dir has its own file of that name.
    """
    if model_dir:
        add_to_sys_path(model_dir)
        base = Path(model_dir)
        own = [base / f"{name}.py", base / name / "__init__.py"]
        cached = sys.modules.get(name)
        existing = next((p for p in own if p.is_file()), None)
        if cached is not None and existing is not None:
            cached_file = getattr(cached, "__file__", None)
            if cached_file is None or Path(cached_file).resolve() != existing.resolve():
                del sys.modules[name]
    return importlib.import_module(name)
