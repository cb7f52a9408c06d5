"""An Input for file paths that understands files dropped on the terminal.

A drop arrives as a bracketed paste (`events.Paste`) in whatever spelling the terminal uses; `PathInput`
parses it with `tsconsole.paths`, puts the path(s) in the field, checks them on disk in a thread and
posts `PathInput.PathsPasted`. Typed values are checked as they change (an existing file, or each of a
comma-separated list when ``multiple``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from textual import events, work
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widgets import Input

from tsconsole.paths import join_paths, parse_pasted_paths, split_existing


class ExistingPaths(Validator):
    """Every (comma-separated, when ``multiple``) path exists; optionally files only, with given suffixes."""

    def __init__(self, *, multiple: bool = False, files_only: bool = True, suffixes: Sequence[str] = ()) -> None:
        super().__init__()
        self.multiple = multiple
        self.files_only = files_only
        self.suffixes = tuple(s.lower() for s in suffixes)

    def validate(self, value: str) -> ValidationResult:
        items = [v.strip() for v in value.split(",")] if self.multiple else [value.strip()]
        for item in filter(None, items):
            path = Path(item).expanduser()
            if not path.exists() and ":" in item[2:]:  # ``handler.py:function`` names a file too
                path = Path(item[: item.rindex(":")]).expanduser()
            if not path.exists():
                return self.failure(f"No such file: {item}")
            if self.files_only and not path.is_file() and not self.multiple:
                return self.failure(f"Not a file: {item}")
            if self.suffixes and path.is_file() and path.suffix.lower() not in self.suffixes:
                return self.failure(f"Expected {' or '.join(self.suffixes)}: {item}")
        return self.success()


class PathInput(Input):
    """``PathInput(placeholder="Drop a file here", multiple=False)``; posts `PathInput.PathsPasted` on a drop."""

    DEFAULT_CSS = """
    PathInput.-dropped {
        background-tint: $success 30%;
    }
    """

    class PathsPasted(Message):
        """Paths were dropped or pasted on the input: ``paths`` exist on disk, ``missing`` do not."""

        def __init__(self, path_input: PathInput, paths: list[Path], missing: list[Path]) -> None:
            super().__init__()
            self.path_input = path_input
            self.paths = paths
            self.missing = missing

        @property
        def control(self) -> PathInput:
            return self.path_input

    def __init__(
        self,
        value: str | None = None,
        placeholder: str = "Drop or paste a file here",
        *,
        multiple: bool = False,
        files_only: bool = True,
        suffixes: Sequence[str] = (),
        validate: bool = True,
        id: str | None = None,
        classes: str | None = None,
        tooltip: str | None = None,
        disabled: bool = False,
        compact: bool = False,
    ) -> None:
        validators = [ExistingPaths(multiple=multiple, files_only=files_only, suffixes=suffixes)] if validate else []
        super().__init__(
            value,
            placeholder,
            validators=validators,
            valid_empty=True,
            id=id,
            classes=classes,
            tooltip=tooltip or "Type a path, or drop files from a file manager onto the terminal.",
            disabled=disabled,
            compact=compact,
        )
        self.multiple = multiple

    def _on_paste(self, event: events.Paste) -> None:
        event.prevent_default()  # not Input's own paste, which would insert the raw first line
        event.stop()
        self.paste_text(event.text)

    def action_paste(self) -> None:
        """``ctrl+v``: the app's own clipboard, parsed like a drop."""
        self.paste_text(self.app.clipboard)

    def paste_text(self, text: str) -> None:
        """Take pasted text as paths: fill the field at once, check the disk in a worker."""
        paths = parse_pasted_paths(text)
        if not paths:
            return
        self.value = join_paths(paths) if self.multiple else str(paths[0])
        self.cursor_position = len(self.value)
        self._check_paths(paths, text)

    @work(exclusive=True, group="path-input-check", name="path-input-check")
    async def _check_paths(self, paths: list[Path], text: str) -> None:
        found, missing = await asyncio.to_thread(split_existing, paths, text)
        # The sender lets `@on(PathInput.PathsPasted, "#id")` selectors match however the worker ran.
        self.post_message(self.PathsPasted(self, found, missing).set_sender(self))

    def on_path_input_paths_pasted(self, message: PathsPasted) -> None:
        if message.path_input is not self:
            return
        if message.paths and not message.missing:
            # The disk may have told a path with spaces from several paths: show what was found.
            self.value = join_paths(message.paths) if self.multiple else str(message.paths[0])
            self.add_class("-dropped")
            self.set_timer(1.0, lambda: self.remove_class("-dropped"))

    @property
    def paths(self) -> list[Path]:
        """The field's path(s), as typed or dropped."""
        items = self.value.split(",") if self.multiple else [self.value]
        return [Path(v.strip()).expanduser() for v in items if v.strip()]
