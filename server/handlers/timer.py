"""``ts.handler_utils.timer.timed``: optional timing of handler steps.

When the model-config YAML has ``handler: {profile: true}``, each decorated method records a
``ts_handler_<method>`` time metric (ms) in ``self.context.metrics``; otherwise it just runs.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _profiling(handler: Any) -> bool:
    context = getattr(handler, "context", None)
    if context is None:
        return False
    config = getattr(context, "model_yaml_config", None) or {}
    section = config.get("handler") if isinstance(config, dict) else None
    return isinstance(section, dict) and bool(section.get("profile"))


def timed(func: F) -> F:
    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _profiling(self):
            return func(self, *args, **kwargs)
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = func(self, *args, **kwargs)
        if cuda:
            torch.cuda.synchronize()
        self.context.metrics.add_time(f"ts_handler_{func.__name__}", (time.perf_counter() - start) * 1000)
        return result

    return wrapper  # type: ignore[return-value]
