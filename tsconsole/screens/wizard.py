"""The archive wizard: drop a model's files, check what it guessed, build a .mar, register it.

``app.push_screen(ArchiveWizard.from_paths(paths, store_dir=store))`` opens it filled from dropped
paths; ``ArchiveWizard()`` opens it empty (a drop anywhere on it fills it). The archive is built on this
machine straight into the model store when the server is local and its store folder is known
(``store_dir``), else the files are uploaded and the server builds it (``POST /console/archives``).
Either way it then offers to register the archive and, once registered, to try it.

Works inside any App with ``client: tsconsole.client.Client`` and ``read_only: bool``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Select, Static

from archiver import ArchiverError, build_model_archive
from archiver.manifest import BUILTIN_HANDLERS
from tsconsole.client import ApiError, Unreachable
from tsconsole.connection import is_local
from tsconsole.messages import ServerAnswered, ServerError
from tsconsole.paths import paths_from_drop
from tsconsole.screens.base import ConsoleScreen
from tsconsole.widgets.path_input import PathInput
from tsconsole.wizard_logic import (
    SERIALIZED_SUFFIXES,
    ArchiveForm,
    Guess,
    check_model_name,
    check_positive_int,
    check_version,
    describe_size,
    form_from_guess,
    guess_from_paths,
    summary,
)

PROGRESS_EVERY_S = 0.05


class Check(Validator):
    """A Textual validator around one of `tsconsole.wizard_logic`'s ``check_*`` functions."""

    def __init__(self, check: Callable[[str], str | None]) -> None:
        super().__init__()
        self.check = check

    def validate(self, value: str) -> ValidationResult:
        message = self.check(value)
        return self.failure(message) if message else self.success()


# Field id -> (label, hint shown when the field is fine)
FIELDS: dict[str, tuple[str, str]] = {
    "model_name": ("Model name", "the .mar's name and the model's name"),
    "version": ("Version", ""),
    "serialized_file": ("Weights", ".pth/.pt: state_dict or TorchScript"),
    "model_file": ("Model file", "the .py defining its nn.Module"),
    "handler": ("Handler", "a built-in…"),
    "handler_file": ("Handler file", "…or your handler .py (wins)"),
    "extra_files": ("Extra files", "comma separated: index_to_name.json…"),
    "requirements_file": ("Requirements", "requirements.txt"),
    "config_file": ("Model config", "model-config.yaml"),
    "batch_size": ("Batch size", "when registering (empty: default)"),
    "initial_workers": ("Initial workers", "when registering"),
}


class ArchiveWizard(ConsoleScreen):
    """Build (and register) a model archive; ``registered_model`` names what it registered, if anything."""

    MUTATING: ClassVar[frozenset[str]] = frozenset({"build", "register"})

    DEFAULT_CSS = """
    ArchiveWizard {
        layout: vertical;
    }
    ArchiveWizard #wizard-title {
        height: 1;
        background: $panel;
        color: $text;
        text-style: bold;
        padding: 0 1;
    }
    ArchiveWizard #wizard-body {
        padding: 0 1;
    }
    ArchiveWizard #drop {
        margin: 0 0 1 0;
    }
    ArchiveWizard #notes {
        color: $text-muted;
        margin: 0 0 1 0;
        height: auto;
    }
    ArchiveWizard .field {
        height: auto;
        margin: 0 0 1 0;
    }
    ArchiveWizard .field-label {
        width: 16;
        padding: 0 1 0 0;
        text-align: right;
        color: $text-muted;
    }
    ArchiveWizard .field Input, ArchiveWizard .field Select {
        width: 1fr;
    }
    ArchiveWizard .field-message {
        width: 44;
        padding: 0 0 0 1;
        color: $text-muted;
    }
    ArchiveWizard .field-message.-error {
        color: $error;
    }
    ArchiveWizard #actions {
        height: auto;
        margin: 1 0 0 0;
    }
    ArchiveWizard #actions Button {
        margin: 0 1 0 0;
    }
    ArchiveWizard #progress {
        margin: 1 0 0 0;
    }
    ArchiveWizard #status {
        height: auto;
        margin: 1 0 0 0;
    }
    ArchiveWizard #status.-error {
        color: $error;
    }
    ArchiveWizard #status.-success {
        color: $success;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="wizard.close", tooltip="Close the wizard"),
        Binding("ctrl+b", "build", "Build", id="wizard.build", tooltip="Build the model archive"),
        Binding("ctrl+r", "register", "Register", id="wizard.register", tooltip="Register the built archive"),
        Binding("ctrl+t", "try_it", "Try it", id="wizard.try_it", tooltip="Send a request to the registered model"),
    ]

    # ---- messages: the workers' results -------------------------------------------------------------------

    class Guessed(Message):
        def __init__(self, guess: Guess) -> None:
            super().__init__()
            self.guess = guess

    class Progress(Message):
        """Build progress: ``total`` bytes (when known) and bytes done so far."""

        def __init__(self, total: int | None, done: int) -> None:
            super().__init__()
            self.total = total
            self.done = done

    class Built(Message):
        """An archive exists: ``url`` is what ``register`` takes (a file name in the store)."""

        def __init__(self, archive: str, url: str, size: int, where: str) -> None:
            super().__init__()
            self.archive = archive
            self.url = url
            self.size = size
            self.where = where

    class Registered(Message):
        def __init__(self, model: str, status: str) -> None:
            super().__init__()
            self.model = model
            self.status = status

    class Failed(Message):
        """A step failed; ``message`` is the archiver's or the server's, for a person."""

        def __init__(
            self, step: str, message: str, fields: dict[str, str] | None = None, error: Exception | None = None
        ) -> None:
            super().__init__()
            self.step = step
            self.message = message
            self.fields = fields or {}
            self.error = error  # the server's error, for the app's error hub

    # ---- construction -----------------------------------------------------------------------------------

    def __init__(
        self,
        paths: Sequence[Path] = (),
        *,
        store_dir: Path | None = None,
        name: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id)
        self.initial_paths = list(paths)
        self.store_dir = store_dir
        self.built_url: str | None = None
        self.registered_model: str | None = None

    @classmethod
    def from_paths(cls, paths: Sequence[Path], *, store_dir: Path | None = None) -> ArchiveWizard:
        """A wizard filled from dropped paths (checked on disk in a worker, once it is shown)."""
        return cls(paths, store_dir=store_dir)

    @property
    def builds_locally(self) -> bool:
        """Build here, into the store, rather than upload: the server is local and its store known."""
        return self.store_dir is not None and is_local(self.client.endpoints.management)

    def compose_body(self) -> ComposeResult:
        yield Static("New model archive  (drop a .pth/.pt file or a model folder anywhere here)", id="wizard-title")
        with VerticalScroll(id="wizard-body"):
            yield PathInput(
                placeholder="Drop or paste a weights file, several files or a folder…",
                multiple=True,
                files_only=False,
                id="drop",
            )
            yield Static("Drop a model's files to fill the fields below, or fill them in.", id="notes", markup=False)
            for field, (label, hint) in FIELDS.items():
                with Horizontal(classes="field", id=f"{field}-row"):
                    yield Label(label, classes="field-label")
                    yield self._field_widget(field)
                    yield Static(hint, classes="field-message", id=f"{field}-message", markup=False)
            yield Checkbox("Overwrite an archive of the same name", id="force", compact=True)
            with Horizontal(id="actions"):
                yield Button("Build archive", id="build", variant="primary", tooltip="ctrl+b")
                yield Button("Register", id="register", disabled=True, tooltip="ctrl+r")
                yield Button("Try it", id="try-it", disabled=True, tooltip="ctrl+t")
                yield Button("Close", id="close", tooltip="escape")
            yield ProgressBar(id="progress", show_eta=False)
            yield Static("", id="status", markup=False)

    def _field_widget(self, field: str) -> Input | Select[str]:
        if field == "handler":
            options = [(f"{name}  ({kind})", name) for name, kind in BUILTIN_HANDLERS.items()]
            return Select(options, value="base_handler", allow_blank=False, id=field, compact=True)
        if field == "model_name":
            return Input(validators=[Check(check_model_name)], id=field, compact=True)
        if field == "version":
            return Input("1.0", validators=[Check(check_version)], id=field, compact=True)
        if field in ("batch_size", "initial_workers"):
            check = Check(check_positive_int)
            return Input("1" if field == "initial_workers" else "", validators=[check], id=field, compact=True)
        suffixes = {
            "serialized_file": SERIALIZED_SUFFIXES,
            "model_file": (".py",),
            "handler_file": (".py",),
            "config_file": (".yaml", ".yml"),
        }.get(field, ())
        multiple = field == "extra_files"
        return PathInput(
            placeholder="", multiple=multiple, files_only=not multiple, suffixes=suffixes, id=field, compact=True
        )

    def on_mount(self) -> None:
        self.query_one("#progress", ProgressBar).display = False
        if self.read_only:
            self._status("Read-only console: archives can be checked here but not built or registered.", "")
            self.query_one("#build", Button).disabled = True
        if self.initial_paths:
            self.load_paths(self.initial_paths)
        else:
            self.query_one("#drop", PathInput).focus()

    # ---- drops ----------------------------------------------------------------------------------------

    def on_paste(self, event: events.Paste) -> None:
        """A drop that no input took (nothing focused, or a button): fill the wizard from it."""
        paths = paths_from_drop(event.text)
        if paths:
            event.stop()
            self.query_one("#drop", PathInput).value = ",".join(map(str, paths))
            self.load_paths(paths)

    @on(PathInput.PathsPasted, "#drop")
    def _dropped(self, message: PathInput.PathsPasted) -> None:
        self.load_paths(message.paths + message.missing)

    def load_paths(self, paths: Sequence[Path]) -> None:
        """Guess the fields from these paths (in a thread) and fill them."""
        self._status("Looking at the dropped files…", "")
        self._guess(list(paths))

    @work(thread=True, exclusive=True, group="wizard-guess", name="wizard-guess")
    def _guess(self, paths: list[Path]) -> None:
        self.post_message(self.Guessed(guess_from_paths(paths)))

    def on_archive_wizard_guessed(self, message: Guessed) -> None:
        guess = message.guess
        for field, value in form_from_guess(guess).items():
            if field == "handler":
                if value:
                    self.query_one("#handler", Select).value = value
            else:
                self.query_one(f"#{field}", Input).value = value
        self.query_one("#drop", PathInput).value = ""
        self.query_one("#notes", Static).update(summary(guess))
        if guess.missing:
            self._status("Some dropped paths do not exist: " + ", ".join(map(str, guess.missing)), "-error")
        elif self.read_only:
            self._status("Read-only console: archives can be checked here but not built or registered.", "")
        else:
            self._status("Check the fields, then Build (ctrl+b).", "")
        self.query_one("#model_name", Input).focus()

    # ---- validation as typed ---------------------------------------------------------------------------

    @on(Input.Changed)
    def _validated(self, event: Input.Changed) -> None:
        field = event.input.id
        if field not in FIELDS:
            return
        result = event.validation_result
        message = self.query_one(f"#{field}-message", Static)
        if result is not None and not result.is_valid:
            message.update(result.failure_descriptions[0])
            message.add_class("-error")
        else:
            message.update(FIELDS[field][1])
            message.remove_class("-error")

    def _show_field_errors(self, errors: dict[str, str]) -> None:
        for field, text in errors.items():
            if field in FIELDS:
                message = self.query_one(f"#{field}-message", Static)
                message.update(text)
                message.add_class("-error")

    def form(self) -> ArchiveForm:
        def value(field: str) -> str:
            return self.query_one(f"#{field}", Input).value.strip()

        handler = self.query_one("#handler", Select).value
        return ArchiveForm(
            model_name=value("model_name"),
            version=value("version"),
            serialized_file=value("serialized_file"),
            model_file=value("model_file"),
            handler=handler if isinstance(handler, str) else "base_handler",
            handler_file=value("handler_file"),
            extra_files=value("extra_files"),
            requirements_file=value("requirements_file"),
            config_file=value("config_file"),
            batch_size=value("batch_size"),
            initial_workers=value("initial_workers"),
            force=self.query_one("#force", Checkbox).value,
        )

    # ---- actions ---------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not super().check_action(action, parameters):
            return False  # read-only: no build, no register
        if action == "register" and self.built_url is None:
            return None  # shown, disabled
        if action == "try_it" and self.registered_model is None:
            return None
        return True

    @on(Button.Pressed, "#build")
    def action_build(self) -> None:
        if self.read_only:
            return
        form = self.form()
        self.query_one("#register", Button).disabled = True
        self.query_one("#build", Button).disabled = True
        bar = self.query_one("#progress", ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)
        if self.builds_locally:
            assert self.store_dir is not None
            self._status(f"Building {form.model_name}.mar into {self.store_dir}…", "")
            self._build_here(form, self.store_dir)
        else:
            self._status(f"Uploading {form.model_name}'s files; the server builds the archive…", "")
            self._upload(form)

    @work(thread=True, exclusive=True, group="wizard-build", name="wizard-build")
    def _build_here(self, form: ArchiveForm, store: Path) -> None:
        errors = form.errors()
        if errors:
            self.post_message(self.Failed("build", "Fix the fields marked in red.", errors))
            return
        state = {"total": 0, "done": 0, "posted": 0.0}

        def factory(total: int, label: str) -> Callable[[int], None]:
            state["total"] = total
            self.post_message(self.Progress(total, 0))

            def advance(delta: int) -> None:
                state["done"] += delta
                now = time.monotonic()
                if now - state["posted"] >= PROGRESS_EVERY_S or state["done"] >= state["total"]:
                    state["posted"] = now
                    self.post_message(self.Progress(int(state["total"]), int(state["done"])))

            return advance

        try:
            archive = build_model_archive(form.archive_config(store), progress=factory)
        except ArchiverError as exc:
            self.post_message(self.Failed("build", _hint(str(exc))))
            return
        except OSError as exc:
            self.post_message(self.Failed("build", f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")))
            return
        size = archive.stat().st_size
        self.post_message(self.Built(str(archive), archive.name, size, "the model store"))

    @work(exclusive=True, group="wizard-build", name="wizard-upload")
    async def _upload(self, form: ArchiveForm) -> None:
        errors = await asyncio.to_thread(form.errors)
        if errors:
            self.post_message(self.Failed("build", "Fix the fields marked in red.", errors))
            return
        try:
            files, fields = await asyncio.to_thread(form.upload)
        except (OSError, ValueError) as exc:
            self.post_message(self.Failed("upload", _message(exc)))
            return
        try:
            answer = await self.client.upload_archive(files, fields)
        except (ApiError, Unreachable) as exc:
            self.post_message(self.Failed("upload", _message(exc), error=exc))
            return
        except OSError as exc:  # a file vanished or became unreadable since it was checked
            self.post_message(self.Failed("upload", _message(exc)))
            return
        archive = str(answer.get("archive", f"{form.model_name}.mar"))
        url = str(answer.get("url") or Path(archive).name)
        self.post_message(self.Built(archive, url, int(answer.get("size") or 0), "the server's model store"))

    def on_archive_wizard_progress(self, message: Progress) -> None:
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=max(message.total or 1, 1), progress=message.done)

    def on_archive_wizard_built(self, message: Built) -> None:
        self.built_url = message.url
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=1, progress=1)
        self.query_one("#build", Button).disabled = self.read_only
        register = self.query_one("#register", Button)
        register.disabled = self.read_only
        size = f" ({describe_size(message.size)})" if message.size else ""
        built = f"Built {Path(message.archive).name}{size} in {message.where}."
        self._status(f"{built} Register it now? (ctrl+r)", "-success")
        register.focus()
        self.refresh_bindings()

    @on(Button.Pressed, "#register")
    def action_register(self) -> None:
        if self.read_only or self.built_url is None:
            return
        form = self.form()
        errors = {k: v for k, v in form.errors().items() if k in ("batch_size", "initial_workers")}
        if errors:
            self._show_field_errors(errors)
            self._status("Fix the fields marked in red.", "-error")
            return
        self.query_one("#register", Button).disabled = True
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=None, progress=0)
        self._status(f"Registering {self.built_url} and starting its workers…", "")
        self._register(self.built_url, form.register_params(), form.model_name)

    @work(exclusive=True, group="wizard-register", name="wizard-register")
    async def _register(self, url: str, params: dict[str, Any], model: str) -> None:
        try:
            answer = await self.client.register(url, **params)
        except (ApiError, Unreachable) as exc:
            self.post_message(self.Failed("register", _message(exc), error=exc))
            return
        self.post_message(self.Registered(model, str(answer.get("status", answer))))

    def on_archive_wizard_registered(self, message: Registered) -> None:
        self.registered_model = message.model
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=1, progress=1)
        self._status(f"{message.status}. Try it? (ctrl+t)", "-success")
        self.post_message(ServerAnswered(message.status))  # the app toasts it and polls the models now
        try_it = self.query_one("#try-it", Button)
        try_it.disabled = False
        try_it.focus()
        self.refresh_bindings()

    def on_archive_wizard_failed(self, message: Failed) -> None:
        self.query_one("#progress", ProgressBar).display = False
        self.query_one("#build", Button).disabled = self.read_only
        self.query_one("#register", Button).disabled = self.read_only or self.built_url is None
        self._show_field_errors(message.fields)
        self._status(message.message, "-error")
        if message.error is not None:
            doing = "upload the model's files" if message.step == "upload" else f"register {self.built_url}"
            self.post_message(ServerError(message.error, doing))  # the app's error hub: banner or toast
        elif not message.fields:
            self.notify(message.message, title=f"{message.step.capitalize()} failed", severity="error", markup=False)

    @on(Button.Pressed, "#try-it")
    def action_try_it(self) -> None:
        if self.registered_model is None:
            return
        from tsconsole.screens.tryit import TryItScreen

        self.app.push_screen(TryItScreen(model=self.registered_model))

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.dismiss(None)

    def _status(self, text: str, kind: str) -> None:
        status = self.query_one("#status", Static)
        status.update(text)
        status.set_classes(kind)


def _message(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.status} {exc.type + ': ' if exc.type else ''}{exc.message}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    return str(exc)


def _hint(message: str) -> str:
    """The archiver speaks of its command-line flags; say which box to tick instead."""
    if "--force" in message:
        message = message.split("\n")[0] + "\nTick 'Overwrite an archive of the same name' to replace it."
    return message


def wizard_for_paste(text: str, *, store_dir: Path | None = None) -> ArchiveWizard | None:
    """For the app's own ``on_paste``: a wizard when the pasted text is dropped files, else None.

    ``if (wizard := wizard_for_paste(event.text, store_dir=store)): self.push_screen(wizard)``
    """
    paths = paths_from_drop(text)
    return ArchiveWizard.from_paths(paths, store_dir=store_dir) if paths else None
