"""The worker's handler service: load a model's handler once, then run batches through it.

Used by the worker process (`server.runtime.worker`), which calls ``server.handlers.compat.install()``
first so TorchServe handlers can import ``ts.*``::

    service = HandlerService.load(load_msg)      # raises LoadError(code, message)
    reply = service.predict(inference_msg)       # a Reply; never raises for handler faults

Entry point resolution (spec §6.1): the handler string is ``module[:function]`` (``.py`` suffix and any
directory prefix dropped); the module is imported from the model dir (put first on sys.path); if that
fails with ImportError, a built-in handler of that name is used. A module-level attribute named
``function`` (default ``handle``) is a function entry point, called ``fn(None, context)`` once at load;
otherwise the module must define exactly one class, which is instantiated with no arguments and
initialized with ``initialize(context)``.

Environment read here: ``TSC_TORCH_THREADS`` (``torch.set_num_threads`` at load) and
``TS_DECODE_INPUT_REQUEST`` (``false`` turns off input decoding, as in TorchServe). A batch's ``threads``
(the frontend's share of the cores for it, `server.runtime.pool.CoreShare`) sets torch's thread count
before it runs.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.handlers.context import SERVER_VERSION, Context, RequestProcessor
from server.handlers.envelopes import ENVELOPES
from server.handlers.metrics import MetricsCache
from server.handlers.responses import UnsupportedOutput, build_responses
from server.handlers.util import get_yaml_config, import_model_dir_module, list_classes_from_module
from server.runtime.messages import Inference, InputItem, Load, Reply, Request

logger = logging.getLogger(__name__)

PREDICTION_METRIC = "PredictionTime"
THREADS_ENV = "TSC_TORCH_THREADS"
DECODE_ENV = "TS_DECODE_INPUT_REQUEST"

BUILTIN_HANDLERS: dict[str, tuple[str, str]] = {
    "base_handler": ("server.handlers.base_handler", "BaseHandler"),
    "image_classifier": ("server.handlers.image_classifier", "ImageClassifier"),
    "image_segmenter": ("server.handlers.image_segmenter", "ImageSegmenter"),
    "object_detector": ("server.handlers.object_detector", "ObjectDetector"),
    "text_classifier": ("server.handlers.text_classifier", "TextClassifier"),
    "vision_handler": ("server.handlers.vision_handler", "VisionHandler"),
    "text_handler": ("server.handlers.text_handler", "TextHandler"),
}
"""Handler names that resolve to this package's classes when no module of that name can be imported."""

EntryPoint = Callable[[Any, Context], Any]


class LoadError(Exception):
    """A load failure, answered to the frontend as ``code``/``message`` (507 out of memory, else 500)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


def _stderr_traceback(headline: str) -> None:
    print(headline, file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()


def _is_cuda_failure(exc: BaseException) -> bool:
    """TorchServe's test: CUDA OOM and near-OOM CUDA errors mention ``CUDA``."""
    return "CUDA" in str(exc)


# -- loading ------------------------------------------------------------------------------------------


def read_manifest(model_dir: str) -> dict[str, Any] | None:
    path = Path(model_dir, "MAR-INF", "MANIFEST.json")
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LoadError(500, f"Invalid MAR-INF/MANIFEST.json: {e}") from e
    if not isinstance(manifest, dict):
        raise LoadError(500, "Invalid MAR-INF/MANIFEST.json: not a JSON object")
    return manifest


def _model_section(manifest: dict[str, Any] | None) -> dict[str, Any]:
    model = (manifest or {}).get("model")
    return model if isinstance(model, dict) else {}


def read_model_yaml_config(model_dir: str, manifest: dict[str, Any] | None) -> dict[str, Any]:
    config_file = _model_section(manifest).get("configFile")
    if not config_file:
        return {}
    try:
        return get_yaml_config(os.path.join(model_dir, config_file))
    except Exception as e:
        raise LoadError(500, f"Cannot read the model config {config_file}: {e}") from e


def split_handler(handler: str) -> tuple[str, str | None]:
    """``path/to/x.py:fn`` → ``("x", "fn")``; ``image_classifier`` → ``("image_classifier", None)``."""
    module_part, sep, function = handler.partition(":")
    if module_part.endswith(".py"):
        module_part = module_part[:-3]
    module_name = module_part.replace("\\", "/").split("/")[-1]
    return module_name, (function or None) if sep else None


def _import_handler_module(module_name: str, model_dir: str) -> Any:
    """The handler module from the model dir / PYTHONPATH, else the built-in handler class."""
    try:
        return import_model_dir_module(module_name, model_dir)
    except ImportError as e:
        own_file = Path(model_dir, f"{module_name}.py").is_file()
        missing_itself = isinstance(e, ModuleNotFoundError) and e.name == module_name
        if module_name in BUILTIN_HANDLERS and (missing_itself or not own_file):
            module_path, class_name = BUILTIN_HANDLERS[module_name]
            return getattr(importlib.import_module(module_path), class_name)
        if missing_itself:
            raise LoadError(500, f"Unable to load module {module_name}, make sure it is added to python path") from e
        raise LoadError(500, f"Cannot import handler module {module_name}: {e}") from e


def resolve_entry_point(
    module_or_class: Any, function_name: str | None
) -> tuple[EntryPoint, Callable[[Context], Any], Any]:
    """(handle function, initializer, handler object) for a handler module or a built-in handler class.

    The handler object is the module for a function entry point, else the handler instance.
    """
    if isinstance(module_or_class, type):
        handler_class = module_or_class
    else:
        module = module_or_class
        name = function_name or "handle"
        if hasattr(module, name):
            fn = getattr(module, name)
            if not callable(fn):
                raise LoadError(500, f"{module.__name__}.{name} is not callable")
            return fn, lambda ctx: fn(None, ctx), module
        classes = list_classes_from_module(module)
        if len(classes) != 1:
            wanted = f"function {name!r} or " if function_name else "a function entry point or "
            raise LoadError(
                500,
                f"Expected {wanted}only one class in custom service code {module.__name__}, "
                f"found {[c.__name__ for c in classes]}",
            )
        handler_class = classes[0]
    instance = handler_class()
    if not hasattr(instance, "handle"):
        raise LoadError(500, f"Expect handle method in class {handler_class.__name__}")
    initialize = getattr(instance, "initialize", None)
    return instance.handle, (initialize if callable(initialize) else (lambda ctx: None)), instance


def _set_torch_threads() -> None:
    value = os.environ.get(THREADS_ENV)
    if not value:
        return
    try:
        threads = int(value)
        if threads < 1:
            raise ValueError
    except ValueError:
        raise LoadError(500, f"{THREADS_ENV} must be a positive integer, got {value!r}") from None
    import torch

    torch.set_num_threads(threads)


def use_threads(threads: int) -> None:
    """torch's intra-op thread count for the next batch (the frontend's share of the cores for it); nothing
    when the handler never imported torch (importing it here would cost seconds for nothing)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# -- predicting ---------------------------------------------------------------------------------------


def decode_input(item: InputItem, decode: bool = True) -> Any:
    """An input's value as the handler sees it (spec §6.2)."""
    raw = bytearray(item.value)
    if not decode:
        return raw
    if item.content_type == "application/json":
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            logger.warning("Failed json decoding of input data. Forwarding encoded payload")
            return raw
    if item.content_type.startswith("text"):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            logger.warning("Failed utf-8 decoding of input data. Forwarding encoded payload")
            return raw
    return raw


def decode_batch(
    requests: list[Request], decode: bool | None = None
) -> tuple[list[dict[str, Any]], list[RequestProcessor], dict[int, str]]:
    """(data, one RequestProcessor per request, batch index → request id)."""
    if decode is None:
        decode = os.environ.get(DECODE_ENV) in (None, "true")
    data: list[dict[str, Any]] = []
    processors: list[RequestProcessor] = []
    request_ids: dict[int, str] = {}
    for idx, request in enumerate(requests):
        row: dict[str, Any] = {}
        headers: dict[str, Any] = {}
        for item in request.inputs:  # same name twice: the last one wins
            row[item.name] = decode_input(item, decode)
            headers[item.name] = {"content-type": item.content_type}
        for name, value in request.headers:
            headers[name] = value
        data.append(row)
        processors.append(RequestProcessor(headers))
        request_ids[idx] = request.request_id
    return data, processors, request_ids


def _prediction_exception(exc: BaseException) -> tuple[int, str] | None:
    """(code, message) of a PredictionException — ours or the real ``ts`` package's."""
    if type(exc).__name__ != "PredictionException" or not hasattr(exc, "error_code"):
        return None
    try:
        code = int(exc.error_code)
    except (TypeError, ValueError):
        code = 500
    return code, str(getattr(exc, "message", exc))


class HandlerService:
    """One loaded handler and its context."""

    def __init__(self, context: Context, entry_point: EntryPoint, handler: Any = None) -> None:
        self._context = context
        self._entry_point = entry_point
        self.handler = handler
        """The handler instance (class entry point) or module (function entry point)."""

    @property
    def context(self) -> Context:
        return self._context

    @property
    def metrics(self) -> MetricsCache:
        return self._context.metrics

    def set_intermediate_sender(self, sender: Callable[[Reply], None] | None) -> None:
        """Let handlers stream: ``send_intermediate_predict_response`` calls ``sender(reply)``."""
        self._context.intermediate_sender = sender

    @classmethod
    def load(cls, msg: Load) -> HandlerService:
        """Resolve and initialize the handler of ``msg``; raises `LoadError` on any failure."""
        try:
            return cls._load(msg)
        except LoadError:
            _stderr_traceback(f"Failed to load model {msg.model_name}")
            raise
        except MemoryError as e:
            _stderr_traceback(f"Load model {msg.model_name}: out of memory")
            raise LoadError(507, "System out of memory") from e
        except Exception as e:
            _stderr_traceback(f"Failed to load model {msg.model_name}")
            if isinstance(e, RuntimeError) and _is_cuda_failure(e):
                raise LoadError(507, "System out of memory") from e
            text = str(e)
            raise LoadError(500, f"{type(e).__name__}: {text}" if text else type(e).__name__) from e

    @classmethod
    def _load(cls, msg: Load) -> HandlerService:
        _set_torch_threads()
        envelope_name = (msg.envelope or "").strip()
        if envelope_name and envelope_name not in ENVELOPES:
            raise LoadError(500, f"Unknown service_envelope {envelope_name!r}")

        model_dir = os.path.abspath(msg.model_path)
        if not os.path.isdir(model_dir):
            raise LoadError(500, f"Model directory not found: {model_dir}")
        manifest = read_manifest(model_dir)
        handler = msg.handler or _model_section(manifest).get("handler") or ""
        if not handler:
            raise LoadError(500, "No handler given for the model")
        yaml_config = read_model_yaml_config(model_dir, manifest)

        module_name, function_name = split_handler(handler)
        if not module_name:
            raise LoadError(500, f"Invalid handler {handler!r}")
        target = _import_handler_module(module_name, model_dir)
        entry_point, initialize, handler_obj = resolve_entry_point(target, function_name)
        if envelope_name:
            entry_point = ENVELOPES[envelope_name](entry_point).handle

        context = Context(
            msg.model_name,
            model_dir,
            manifest,
            msg.batch_size,
            msg.gpu_id if msg.gpu_id is not None and msg.gpu_id >= 0 else None,
            SERVER_VERSION,
            msg.limit_max_image_pixels,
            MetricsCache(msg.model_name),
            yaml_config,
        )
        initialize(context)
        return cls(context, entry_point, handler_obj)

    def predict(self, batch: Inference) -> Reply:
        """Run one batch; whole-batch failures come back as a non-200 `Reply` (spec §6.3)."""
        if batch.threads > 0:
            use_threads(batch.threads)
        context = self._context
        data, processors, request_ids = decode_batch(batch.requests)
        context.request_ids = request_ids
        context.request_processor = processors
        context.metrics.set_request_ids(request_ids)

        start = time.time()
        try:
            ret = self._entry_point(data, context)
        except MemoryError:
            _stderr_traceback("System out of memory")
            return Reply(507, "Out of resources")
        except Exception as e:
            known = _prediction_exception(e)
            if known is not None:
                _stderr_traceback("Prediction error")
                return Reply(*known)
            if _is_cuda_failure(e):
                _stderr_traceback("CUDA out of memory")
                return Reply(507, "Out of resources")
            _stderr_traceback("Invoking custom service failed.")
            return Reply(503, "Prediction failed")

        if not isinstance(ret, list):
            logger.warning("model: %s, Invalid return type: %s.", context.model_name, type(ret))
            return Reply(503, "Invalid model predict output")
        if len(ret) != len(data):
            logger.warning(
                "model: %s, number of batch response mismatched, expect: %d, got: %d.",
                context.model_name,
                len(data),
                len(ret),
            )
            return Reply(503, "number of batch response mismatched")

        context.metrics.add_time(PREDICTION_METRIC, round((time.time() - start) * 1000, 2))
        try:
            responses = build_responses(ret, request_ids, context)
        except UnsupportedOutput:
            _stderr_traceback("Unable to serialize model output.")
            return Reply(503, "Unsupported model output data type.")
        except Exception:
            _stderr_traceback("Building the responses failed.")
            return Reply(503, "Prediction failed")
        return Reply(200, "Prediction success", responses)
