"""Config snapshots (spec §10): after every change the server writes its whole configuration and every
model version to ``$LOG_LOCATION/config/<yyyyMMddHHmmssSSS>-<kind>.cfg``; a later start without
``--ncs`` (and without an explicit config file) reads the newest one and restores every model.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from server.config import Settings, latest_snapshot
from server.models.store import file_name
from server.properties import format_properties, parse_properties

SUFFIX = ".cfg"


__all__ = ["SnapshotWriter", "latest_snapshot", "model_snapshot", "snapshot_archives", "snapshot_dir"]


def snapshot_dir(log_location: Path) -> Path:
    return log_location / "config"


def model_snapshot(registry: Any, name: str) -> dict[str, Any]:
    models: dict[str, dict[str, Any]] = {}
    for entry in sorted(registry.all_versions(), key=lambda e: (e.name, e.version)):
        saved = {
            "defaultVersion": registry.is_default(entry),
            "marName": entry.mar_name,
            "minWorkers": entry.min_workers,
            "maxWorkers": entry.max_workers,
            "batchSize": entry.spec.batch_size,
            "maxBatchDelay": int(entry.spec.max_batch_delay_ms),
            "responseTimeout": int(entry.spec.response_timeout_s),
            "startupTimeout": int(entry.spec.startup_timeout_s),
            "runtimeType": entry.runtime,
        }
        models.setdefault(entry.name, {})[entry.version] = saved
    return {"name": name, "modelCount": len(models), "created": int(time.time() * 1000), "models": models}


def _saved_models(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(parse_properties(path.read_text(encoding="utf-8")).get("model_snapshot") or "{}")
    except (OSError, ValueError):
        return {}
    models = saved.get("models") if isinstance(saved, dict) else None
    return models if isinstance(models, dict) else {}


def snapshot_archives(settings: Settings, store: Path) -> dict[Path, str]:
    """The store entries the snapshots a restart would read name (resolved path -> snapshot file name): the
    newest snapshot under ``log_location``, and the snapshot this server started from. Blocking (reads files)."""
    sources: list[tuple[str, dict[str, Any]]] = []
    newest = latest_snapshot(settings.log_location)
    if newest is not None:
        sources.append((newest.name, _saved_models(newest)))
    if settings.model_snapshot is not None and settings.config_file is not None:
        sources.append((settings.config_file.name, settings.model_snapshot.get("models") or {}))
    found: dict[Path, str] = {}
    for snapshot, models in sources:
        for versions in models.values():
            for saved in versions.values() if isinstance(versions, dict) else ():
                mar = saved.get("marName") if isinstance(saved, dict) else None
                if isinstance(mar, str) and file_name(mar):
                    found.setdefault((store / file_name(mar)).resolve(), snapshot)
    return found


def _new_path(folder: Path, kind: str) -> Path:
    while True:  # an existing snapshot is never overwritten
        now = datetime.now()
        path = folder / f"{now:%Y%m%d%H%M%S}{now.microsecond // 1000:03d}-{kind}{SUFFIX}"
        if not path.exists():
            return path
        time.sleep(0.001)


class SnapshotWriter:
    """Writes snapshots off the event loop, one at a time, unless snapshots are disabled (``--ncs``)."""

    def __init__(self, settings: Settings, registry: Any) -> None:
        self.settings = settings
        self.registry = registry
        self._lock = asyncio.Lock()

    async def write(self, kind: str = "snapshot") -> Path | None:
        if not self.settings.snapshots:
            return None
        async with self._lock:
            folder = snapshot_dir(self.settings.log_location)
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            path = await asyncio.to_thread(_new_path, folder, kind)
            props = {k: v for k, v in self.settings.properties.items() if k != "model_snapshot"}
            props["model_snapshot"] = json.dumps(model_snapshot(self.registry, path.name), indent=2)
            text = format_properties(props, "Saving snapshot")
            stamp = datetime.now().strftime("%a %b %d %H:%M:%S %Y")
            text = text.replace("#Saving snapshot\n", f"#Saving snapshot\n#{stamp}\n", 1)
            await asyncio.to_thread(path.write_text, text, encoding="utf-8")
            return path
