"""The dashboard: every model version with its figures, host and GPU charts, and the worker processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static

from tsconsole.formatting import DASH, millis, percent, rate, size
from tsconsole.pollers import ModelsSnapshot, ModelVersion, SystemSnapshot, row_key
from tsconsole.screens.base import FilteredTableScreen
from tsconsole.widgets.keyed_table import Cell, KeyedTable
from tsconsole.widgets.system_panel import NEEDS_TSCONSOLE, SystemPanel

BASE_COLUMNS = [
    ("model", "Model"),
    ("version", "Version"),
    ("default", "Default"),
    ("status", "Status"),
    ("workers", "Workers ready/total"),
    ("batch", "Batch"),
    ("queue", "Queue"),
    ("rps", "Req/s"),
]
MODEL_COLUMNS = [*BASE_COLUMNS, ("latency", "Latency avg ms")]  # the server exports latency sums only
PERCENTILE_COLUMNS = [*BASE_COLUMNS, ("p50", "p50 ms"), ("p99", "p99 ms")]  # it exports tsconsole's histogram
WORKER_COLUMNS = [
    ("model", "Model"),
    ("id", "Worker"),
    ("pid", "PID"),
    ("status", "Status"),
    ("cpu", "CPU"),
    ("rss", "RSS"),
    ("gpu", "GPU"),
    ("gpu_memory", "GPU mem"),
]
LATENCY_NOTE = "Latency: average over the last refresh (the server exports sums, not a histogram: no p50/p99)."
PERCENTILE_NOTE = "Latency: p50/p99 of the requests answered since the last refresh (the server's latency histogram)."
NO_METRICS_NOTE = "Req/s and latency need the server's metrics API in prometheus mode (metrics_mode=prometheus)."

STATUS_STYLE = {"READY": "green", "DEGRADED": "yellow", "SCALING": "yellow", "LOADING": "yellow", "NO WORKERS": "dim"}


def model_cells(m: ModelVersion, percentiles: bool = False) -> tuple[Cell, ...]:
    """The cells of `PERCENTILE_COLUMNS` when ``percentiles``, else of `MODEL_COLUMNS`."""
    latency = (millis(m.p50_ms), millis(m.p99_ms)) if percentiles else (millis(m.latency_ms),)
    return (
        m.name,
        m.version,
        "*" if m.is_default else "",
        Text(m.status, style=STATUS_STYLE.get(m.status, "")),
        f"{m.workers_ready}/{m.workers_total}",
        str(m.batch_size),
        str(m.queue),
        rate(m.requests_per_s),
        *latency,
    )


def matches(text: str, *fields: str) -> bool:
    needle = text.strip().lower()
    return not needle or any(needle in f.lower() for f in fields)


def worker_cells(w: dict) -> tuple[Cell, ...]:
    gpu = w.get("gpu")
    no_gpu = gpu is None or gpu is False or gpu in ("", -1)
    return (
        f"{w.get('model', '')} {w.get('version', '')}".strip(),
        str(w.get("id", "")),
        str(w.get("pid", "")),
        str(w.get("status", "")),
        percent(w.get("cpuPercent")),
        size(w.get("rss")),
        DASH if no_gpu else str(gpu),
        DASH if no_gpu else size(w.get("gpuMemory")),
    )


class ModelsTable(KeyedTable):
    """The models table: its latency columns follow what the server exports (an average, or p50/p99)."""

    def set_columns(self, columns: Sequence[tuple[str, str]]) -> bool:
        """Show ``columns`` instead (the rows come again with the next `sync`); False when they are shown already."""
        if list(columns) == self._column_spec:
            return False
        self._column_spec = list(columns)
        self._cells = {}
        self.clear(columns=True)
        for key, label in self._column_spec:
            self.add_column(label, key=key)
        return True


class DashboardScreen(FilteredTableScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="dashboard.filter", tooltip="Show only models matching a text"),
        Binding("escape", "clear_filter", "Clear filter", id="dashboard.clear_filter", show=False,
                tooltip="Show every model again"),
        Binding("enter", "open_model", "Open", id="dashboard.open", show=False,
                tooltip="Open the chosen model version on the models screen"),
    ]  # fmt: skip

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="filter models (escape clears)", id="filter")
        with Vertical(id="models-panel", classes="panel"):
            yield ModelsTable(MODEL_COLUMNS, sort_columns=("model", "version"), id="models")
            yield Static("", id="models-note", classes="note", markup=False)
        with Horizontal(id="lower"):
            with Vertical(id="system-panel", classes="panel"):
                yield SystemPanel(id="system")
            with Vertical(id="workers-panel", classes="panel"):
                yield KeyedTable(WORKER_COLUMNS, sort_columns=("model", "id"), id="workers")
                yield Static("", id="workers-note", classes="note", markup=False)

    def on_mount(self) -> None:
        self.query_one("#models-panel").border_title = "Models"
        self.query_one("#system-panel").border_title = "Host & GPUs"
        self.query_one("#workers-panel").border_title = "Worker processes"
        self.query_one("#filter", Input).display = False
        self.watch(self.app, "models", self._show_models, init=True)
        self.watch(self.app, "system", self._show_system, init=True)
        self.query_one("#models", KeyedTable).focus()

    # ---- data -----------------------------------------------------------------------------------

    @property
    def filter_text(self) -> str:
        return self.query_one("#filter", Input).value

    def _show_models(self, snapshot: ModelsSnapshot | None) -> None:
        if snapshot is None:
            return
        percentiles = snapshot.latency_histogram
        table = self.query_one("#models", ModelsTable)
        selected = table.selected_key
        changed = table.set_columns(PERCENTILE_COLUMNS if percentiles else MODEL_COLUMNS)
        shown = {
            m.key: model_cells(m, percentiles) for m in snapshot.models if matches(self.filter_text, m.name, m.version)
        }
        table.sync(shown)
        if changed and selected is not None:
            table.select_key(selected)  # the columns changed: the rows came again, the cursor stays on its row
        total = len(snapshot.models)
        count = f"{len(shown)} of {total} model versions" if len(shown) != total else f"{total} model versions"
        note = (PERCENTILE_NOTE if percentiles else LATENCY_NOTE) if snapshot.metrics_available else NO_METRICS_NOTE
        self.query_one("#models-note", Static).update(f"{count}. {note}" if total else "No model is registered.")

    def _show_system(self, snapshot: SystemSnapshot | None) -> None:
        if snapshot is None:
            return
        self.query_one(SystemPanel).show(snapshot)
        workers = {
            row_key(str(w.get("model")), f"{w.get('version')}/{w.get('id')}"): worker_cells(w)
            for w in snapshot.workers
            if matches(self.filter_text, str(w.get("model", "")), str(w.get("version", "")))
        }
        self.query_one("#workers", KeyedTable).sync(workers)
        note = self.query_one("#workers-note", Static)
        if not snapshot.supported:
            note.update(NEEDS_TSCONSOLE)
        else:
            note.update("" if snapshot.workers else "No worker process is running.")

    # ---- actions --------------------------------------------------------------------------------

    def refilter(self) -> None:
        self._show_models(self.app.models)  # type: ignore[attr-defined]
        self._show_system(self.app.system)  # type: ignore[attr-defined]

    def action_open_model(self) -> None:
        key = self.query_one("#models", KeyedTable).selected_key
        if key is not None:
            self.app.show_model(key)  # type: ignore[attr-defined]

    @on(DataTable.RowSelected, "#models")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.app.show_model(str(event.row_key.value))  # type: ignore[attr-defined]
