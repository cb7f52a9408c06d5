"""``ts.torch_handler.base_handler``: load a model and run preprocess → inference → postprocess.

Model forms (spec §6.5), chosen from the manifest:

* ``modelFile`` given (eager mode): import it from the model dir, instantiate its one class with no
  arguments, load the ``serializedFile`` state_dict (``map_location`` = the device) if there is one.
  A serialized file holding a whole pickled ``nn.Module`` is used as is.
* else a ``.pt``/``.pth`` serialized file: TorchScript (``torch.jit.load``); if it is not TorchScript, a
  whole module saved with ``torch.save`` (loaded with ``weights_only=False``; its class must be importable,
  e.g. a ``.py`` in the archive).
* else ``.onnx`` when onnxruntime is installed.
* anything else: ``RuntimeError("No model weights could be loaded")``.

Device: ``cuda:<gpu_id>`` when CUDA is available and the worker was given a GPU, else CPU. Other
accelerators (XPU, MPS, XLA), IPEX, ``torch.compile`` from ``pt2`` options and the torch profiler
(``ENABLE_TORCH_PROFILER``) are not supported.

This module defines exactly one class, so ``base_handler`` works as a class entry point.
"""

from __future__ import annotations

import abc
import logging
import os
import pickle
import time
import warnings
from typing import Any

import torch

from server.handlers.context import Context
from server.handlers.timer import timed
from server.handlers.util import (
    PredictionException,
    add_to_sys_path,
    import_model_dir_module,
    list_classes_from_module,
    load_label_mapping,
)

logger = logging.getLogger(__name__)

SCRIPT_SUFFIXES = (".pt", ".pth")


def _torch_load(path: str, map_location: Any) -> Any:
    """``torch.load`` with the safe loader first, then the full unpickler (archives are trusted code)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(path, map_location=map_location, weights_only=False)


def _is_torchscript(path: str) -> bool:
    """TorchScript archives are zip files holding ``<root>/constants.pkl`` or ``<root>/code/``."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


class BaseHandler(abc.ABC):  # noqa: B024 - abstract in name only, as in TorchServe
    """TorchServe's default handler (spec §6.5)."""

    def __init__(self) -> None:
        self.model: Any = None
        self.mapping: dict[str, str] | None = None
        self.device: torch.device | None = None
        self.initialized = False
        self.context: Context | None = None
        self.model_pt_path: str | None = None
        self.manifest: dict[str, Any] | None = None
        self.map_location: str | None = None
        self.explain = False
        self.target = 0
        self.profiler_args: dict[str, Any] = {}
        self.model_yaml_config: dict[str, Any] = {}

    # -- loading -------------------------------------------------------------------------------------

    def initialize(self, context: Context) -> None:
        """Choose the device, load the model and ``index_to_name.json``; sets ``self.initialized``."""
        if context is not None and hasattr(context, "model_yaml_config"):
            self.model_yaml_config = context.model_yaml_config or {}
        properties = context.system_properties
        gpu_id = properties.get("gpu_id")
        if torch.cuda.is_available() and gpu_id is not None:
            self.map_location = "cuda"
            self.device = torch.device(f"cuda:{gpu_id}")
        else:
            self.map_location = "cpu"
            self.device = torch.device("cpu")

        self.manifest = context.manifest
        model_dir = properties.get("model_dir") or ""
        model_section = (self.manifest or {}).get("model") or {}
        serialized = model_section.get("serializedFile")
        self.model_pt_path = os.path.join(model_dir, serialized) if serialized else None
        model_file = model_section.get("modelFile", "")

        if model_file:
            logger.debug("Loading eager model")
            self.model = self._load_pickled_model(model_dir, model_file, self.model_pt_path)
            self.model.to(self.device)
            self.model.eval()
        elif self.model_pt_path and self.model_pt_path.endswith(SCRIPT_SUFFIXES):
            self.model = self._load_serialized_module(self.model_pt_path, model_dir)
            if hasattr(self.model, "to"):
                self.model.to(self.device)
            self.model.eval()
        elif self.model_pt_path and self.model_pt_path.endswith(".onnx"):
            self.model = self._load_onnx_session(self.model_pt_path)
        else:
            raise RuntimeError("No model weights could be loaded")

        logger.debug("Model file %s loaded successfully", self.model_pt_path)
        self.mapping = load_label_mapping(os.path.join(model_dir, "index_to_name.json"))
        self.initialized = True

    def _load_torchscript_model(self, model_pt_path: str) -> Any:
        with warnings.catch_warnings():  # torch >= 2.10 flags TorchScript as deprecated; it still loads
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(model_pt_path, map_location=self.device)

    def _load_serialized_module(self, model_pt_path: str, model_dir: str) -> Any:
        """TorchScript, else a whole ``nn.Module`` saved with ``torch.save``."""
        if _is_torchscript(model_pt_path):
            return self._load_torchscript_model(model_pt_path)
        add_to_sys_path(model_dir)  # the pickled module's class may live in a .py of the archive
        obj = torch.load(model_pt_path, map_location=self.device, weights_only=False)
        if isinstance(obj, torch.nn.Module):
            return obj
        kind = "a state_dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise RuntimeError(
            f"{os.path.basename(model_pt_path)} holds {kind}, not a TorchScript or pickled nn.Module: "
            "archive it with --model-file (the model class) to load a state_dict"
        )

    def _load_pickled_model(self, model_dir: str, model_file: str, model_pt_path: str | None) -> Any:
        """Eager mode: the one class of ``model_file``, with the state_dict of ``model_pt_path``."""
        model_def_path = os.path.join(model_dir, model_file)
        if not os.path.isfile(model_def_path):
            raise RuntimeError("Missing the model.py file")
        module = import_model_dir_module(model_file.split(".")[0], model_dir)
        classes = list_classes_from_module(module)
        if len(classes) != 1:
            raise ValueError(
                f"Expected only one class as model definition in {model_file}, found {[c.__name__ for c in classes]}"
            )
        model = classes[0]()
        if model_pt_path:
            loaded = _torch_load(model_pt_path, self.device)
            if isinstance(loaded, torch.nn.Module):
                return loaded
            model.load_state_dict(loaded)
        return model

    def _load_onnx_session(self, model_path: str) -> Any:
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeError("No model weights could be loaded: .onnx models need onnxruntime") from None
        providers = ["CPUExecutionProvider"]
        if self.map_location == "cuda":
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.intra_op_num_threads = os.cpu_count() or 1
        return ort.InferenceSession(model_path, providers=providers, sess_options=options)

    # -- the three steps -----------------------------------------------------------------------------

    @timed
    def preprocess(self, data: list[Any]) -> Any:
        """Default: the batch as one tensor (``torch.as_tensor(data)``)."""
        return torch.as_tensor(data, device=self.device)

    @timed
    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """Default: the model called on ``data`` (moved to the device) under ``torch.inference_mode()``."""
        with torch.inference_mode():
            marshalled = data.to(self.device) if hasattr(data, "to") else data
            return self.model(marshalled, *args, **kwargs)

    @timed
    def postprocess(self, data: Any) -> list[Any]:
        """Default: ``tensor.tolist()``."""
        return data.tolist()

    # -- entry point ---------------------------------------------------------------------------------

    def handle(self, data: list[Any], context: Context) -> list[Any]:
        """One batch: describe, explain, or preprocess → inference → postprocess; records HandlerTime."""
        start = time.time()
        self.context = context
        if self._is_describe():
            output = [self.describe_handle()]
        else:
            preprocessed = self.preprocess(data)
            if self._is_explain():
                output = self.explain_handle(preprocessed, data)
            else:
                output = self.postprocess(self.inference(preprocessed))
        context.metrics.add_time("HandlerTime", round((time.time() - start) * 1000, 2), None, "ms")
        return output

    def explain_handle(self, data_preprocess: Any, raw_data: list[Any]) -> Any:
        """Explanations of the first request (its ``data``/``body`` and optional ``target``)."""
        inputs = None
        target: Any = 0
        row = raw_data[0] if raw_data else None
        if isinstance(row, dict):
            inputs = row.get("data") or row.get("body")
            target = row.get("target") or 0
        return self.get_insights(data_preprocess, inputs, target)

    def get_insights(self, tensor_data: Any, raw_input: Any, target: Any = 0) -> Any:
        raise PredictionException(f"{type(self).__name__} does not support explanations", 503)

    def _request_flag(self, name: str) -> bool:
        if self.context is None or not self.context.request_processor:
            return False
        return self.context.get_request_header(0, name) == "True"

    def _is_explain(self) -> bool:
        if self._request_flag("explain"):
            self.explain = True
            return True
        return False

    def _is_describe(self) -> bool:
        return self._request_flag("describe")

    def describe_handle(self) -> Any:
        """The answer to a describe job (``describe`` header ``True``); None unless overridden."""
        return None

    def get_device(self) -> torch.device | None:
        return self.device
