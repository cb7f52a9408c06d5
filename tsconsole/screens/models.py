"""The models screen: every model version, its details, and the changes: register, scale, default, unregister.

Each change runs in a named worker; unregistering and scaling to 0 ask first, through the one
`ConfirmModal`, naming the exact model version and change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Static

from tsconsole.formatting import size
from tsconsole.messages import ServerAnswered, ServerError
from tsconsole.pollers import ModelsSnapshot, ModelVersion
from tsconsole.screens.base import FilteredTableScreen
from tsconsole.screens.dashboard import STATUS_STYLE, matches
from tsconsole.widgets.confirm import ConfirmModal
from tsconsole.widgets.keyed_table import Cell, KeyedTable
from tsconsole.widgets.register_form import RegisterModal, RegisterRequest
from tsconsole.widgets.scale_form import ScaleModal, ScaleRequest

COLUMNS = [
    ("model", "Model"),
    ("version", "Version"),
    ("default", "Default"),
    ("status", "Status"),
    ("workers", "Workers"),
    ("range", "Min-max"),
    ("batch", "Batch"),
    ("delay", "Delay"),
]

DETAIL_FIELDS = [
    ("modelUrl", "Archive"),
    ("runtime", "Runtime"),
    ("deviceType", "Device"),
    ("minWorkers", "Min workers"),
    ("maxWorkers", "Max workers"),
    ("batchSize", "Batch size"),
    ("maxBatchDelay", "Max batch delay (ms)"),
    ("responseTimeout", "Response timeout (s)"),
    ("startupTimeout", "Startup timeout (s)"),
    ("loadedAtStartup", "Loaded at startup"),
]


def row_cells(m: ModelVersion) -> tuple[Cell, ...]:
    return (
        m.name,
        m.version,
        "*" if m.is_default else "",
        Text(m.status, style=STATUS_STYLE.get(m.status, "")),
        f"{m.workers_ready}/{m.workers_total}",
        f"{m.min_workers}-{m.max_workers}",
        str(m.batch_size),
        str(m.max_batch_delay),
    )


def describe_text(m: ModelVersion) -> Text:
    text = Text()
    text.append(f"{m.name} {m.version}", style="bold")
    text.append("  (default version)\n" if m.is_default else "\n")
    text.append(f"{m.status}: {m.workers_ready} of {m.workers_total} workers ready\n")
    text.append(f"{m.queue} request(s) waiting in the queue\n\n")
    for field, label in DETAIL_FIELDS:
        if field in m.describe:
            text.append(f"{label:<22}", style="dim")
            text.append(f"{m.describe[field]}\n")
    workers = m.describe.get("workers") or []
    text.append("\nWorkers\n", style="bold")
    if not workers:
        text.append("none\n", style="dim")
    for w in workers:
        gpu = w.get("gpuUsage") or "N/A"
        text.append(f"  {w.get('id')}  pid {w.get('pid')}  {w.get('status')}  {size(w.get('memoryUsage'))}")
        text.append(f"  {gpu}\n" if gpu != "N/A" else "\n")
    return text


class ModelsScreen(FilteredTableScreen):
    MUTATING: ClassVar[frozenset[str]] = frozenset({"register", "scale", "set_default", "unregister"})

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="models.filter", tooltip="Show only models matching a text"),
        Binding("escape", "clear_filter", "Clear filter", id="models.clear_filter", show=False,
                tooltip="Show every model again"),
        Binding("r", "register", "Register", id="models.register",
                tooltip="Register a model archive from the model store or a URL"),
        Binding("s", "scale", "Scale", id="models.scale", tooltip="Set the min/max workers of the chosen version"),
        Binding("asterisk", "set_default", "Default", id="models.set_default",
                tooltip="Make the chosen version the model's default"),
        Binding("u,delete", "unregister", "Unregister", id="models.unregister",
                tooltip="Unregister the chosen model version (asks first)"),
    ]  # fmt: skip

    def compose_body(self) -> ComposeResult:
        yield Input(placeholder="filter models (escape clears)", id="filter")
        with Horizontal(id="models-body"):
            with Vertical(id="list-panel", classes="panel"):
                yield KeyedTable(COLUMNS, sort_columns=("model", "version"), id="models")
            with Vertical(id="detail-panel", classes="panel"):
                with VerticalScroll(id="detail-scroll"):
                    yield Static("Choose a model version.", id="detail")
                with Horizontal(id="actions"):
                    yield Button("Register", id="do-register", variant="primary", compact=True, tooltip="r")
                    yield Button("Scale", id="do-scale", compact=True, tooltip="s")
                    yield Button("Default", id="do-set_default", compact=True, tooltip="* set default version")
                    yield Button("Unregister", id="do-unregister", variant="error", compact=True, tooltip="u")

    def on_mount(self) -> None:
        self.query_one("#list-panel").border_title = "Model versions"
        self.query_one("#detail-panel").border_title = "Details"
        self.query_one("#filter", Input).display = False
        self.query_one("#actions").display = not self.read_only
        self.watch(self.app, "models", self._show_models, init=True)
        self.query_one("#models", KeyedTable).focus()

    def on_screen_resume(self) -> None:
        key = getattr(self.app, "selected_key", None)
        table = self.query_one("#models", KeyedTable)
        if key and table.selected_key != key:
            table.select_key(key)
        table.focus()

    # ---- data -----------------------------------------------------------------------------------

    @property
    def snapshot(self) -> ModelsSnapshot | None:
        return getattr(self.app, "models", None)

    @property
    def selected(self) -> ModelVersion | None:
        key = self.query_one("#models", KeyedTable).selected_key
        snapshot = self.snapshot
        return snapshot.get(key) if snapshot is not None and key is not None else None

    def _show_models(self, snapshot: ModelsSnapshot | None) -> None:
        if snapshot is None:
            return
        text = self.query_one("#filter", Input).value
        table = self.query_one("#models", KeyedTable)
        table.sync({m.key: row_cells(m) for m in snapshot.models if matches(text, m.name, m.version)})
        wanted = getattr(self.app, "selected_key", None)
        if wanted and table.selected_key != wanted:
            table.select_key(wanted)
        self._show_detail()

    def _show_detail(self) -> None:
        model = self.selected
        detail = self.query_one("#detail", Static)
        if model is None:
            empty = self.snapshot is not None and not self.snapshot.models
            detail.update("No model is registered. Press r to register one." if empty else "Choose a model version.")
        else:
            detail.update(describe_text(model))

    @on(DataTable.RowHighlighted, "#models")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self.app.selected_key = str(event.row_key.value)  # type: ignore[attr-defined]
        self._show_detail()

    # ---- filter ---------------------------------------------------------------------------------

    def refilter(self) -> None:
        self._show_models(self.snapshot)

    # ---- actions --------------------------------------------------------------------------------

    @on(Button.Pressed, "#actions Button")
    async def _button(self, event: Button.Pressed) -> None:
        event.stop()
        action = (event.button.id or "").removeprefix("do-")
        if action in self.MUTATING and not self.read_only:
            await self.run_action(action)

    def _target(self) -> ModelVersion | None:
        model = self.selected
        if model is None:
            self.notify("Choose a model version first.", severity="warning")
        return model

    def action_register(self) -> None:
        if self.read_only:
            return
        self.app.push_screen(RegisterModal(), self._register_chosen)

    def _register_chosen(self, request: RegisterRequest | None) -> None:
        if request is not None:
            self.change(f"register {request.url}", lambda: self.client.register(request.url, **request.params()))

    def action_scale(self) -> None:
        model = self._target()
        if model is None or self.read_only:
            return
        target = f'model "{model.name}" version {model.version}'
        self.app.push_screen(
            ScaleModal(target, model.min_workers, model.max_workers), lambda r: self._scale_chosen(model, r)
        )

    def _scale_chosen(self, model: ModelVersion, request: ScaleRequest | None) -> None:
        if request is None:
            return

        def scale() -> Awaitable[dict[str, Any]]:
            return self.client.scale(
                model.name, request.min_workers, request.max_workers,
                version=model.version, synchronous=request.synchronous,
            )  # fmt: skip

        doing = f'scale "{model.name}" {model.version}'
        if request.min_workers == 0 and (request.max_workers or 0) == 0:
            question = f'Scale model "{model.name}" version {model.version} to 0 workers?'
            detail = f"Its {model.workers_total} worker(s) stop and it answers no requests until scaled up again."
            self.confirm(question, detail, "Scale to 0", lambda: self.change(doing, scale))
        else:
            self.change(doing, scale)

    def action_set_default(self) -> None:
        model = self._target()
        if model is None or self.read_only:
            return
        if model.is_default:
            self.notify(f'{model.version} already is the default version of "{model.name}".')
            return
        self.change(
            f'make {model.version} the default of "{model.name}"',
            lambda: self.client.set_default(model.name, model.version),
        )

    def action_unregister(self) -> None:
        model = self._target()
        if model is None or self.read_only:
            return
        question = f'Unregister model "{model.name}" version {model.version}?'
        detail = f"Its {model.workers_total} worker(s) stop; the archive stays in the model store."
        self.confirm(
            question,
            detail,
            "Unregister",
            lambda: self.change(
                f'unregister "{model.name}" {model.version}', lambda: self.client.unregister(model.name, model.version)
            ),
        )

    def confirm(self, question: str, detail: str, label: str, then: Callable[[], object]) -> None:
        """The one confirmation path for destructive changes."""

        def answered(yes: bool | None) -> None:
            if yes:
                then()
            else:
                self.notify("Nothing was changed.")

        self.app.push_screen(ConfirmModal(question, detail=detail, confirm=label), answered)

    @work(name="model-change", group="changes", exit_on_error=False)
    async def change(self, doing: str, request: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Send one change; the server's status message (or error) goes to the app's hub."""
        self.notify(f"Asked the server to {doing}…")
        try:
            answer = await request()
        except Exception as exc:
            self.app.post_message(ServerError(exc, doing))
            return
        self.app.post_message(ServerAnswered(str(answer.get("status", answer))))
