"""``ts`` for handlers written for TorchServe, when the real TorchServe package is not installed.

`install()` appends this folder to sys.path, so ``import ts.torch_handler.image_classifier`` and the like
resolve to ``server/handlers/compat/ts/...``, whose modules re-export this project's implementations
(``ts.torch_handler.image_classifier.ImageClassifier is server.handlers.image_classifier.ImageClassifier``).
Appended, not prepended: a real installed ``ts`` always wins. The worker calls `install()` before it
loads a handler. Importing this module does not import torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

COMPAT_DIR = os.path.dirname(os.path.abspath(__file__))
"""The folder that holds the ``ts`` package tree."""


def _ts_is_ours(spec: importlib.machinery.ModuleSpec) -> bool:
    locations = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    return any(os.path.abspath(loc).startswith(COMPAT_DIR + os.sep) for loc in locations)


def install() -> bool:
    """Make ``import ts`` resolve to the compatibility package unless a real ``ts`` is importable.

    Returns True when ``ts`` now resolves to the compatibility package (installed by this call or an
    earlier one), False when another ``ts`` package is importable and was left alone.
    """
    try:
        spec = importlib.util.find_spec("ts")
    except (ImportError, ValueError):
        return False
    if spec is not None:
        return _ts_is_ours(spec)
    if COMPAT_DIR not in sys.path:
        sys.path.append(COMPAT_DIR)
    importlib.invalidate_caches()
    return True
