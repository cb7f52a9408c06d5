"""The connection banner: shown above every screen while the server is unreachable or refuses our token."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import App
from textual.widgets import Static


@dataclass(frozen=True)
class Problem:
    """Why the console cannot talk to the server; ``kind`` is ``unreachable`` or ``auth``."""

    kind: str
    text: str


class Banner(Static):
    """Follows the app's ``problem`` reactive; hidden while there is none."""

    DEFAULT_CSS = """
    Banner {
        height: auto;
        padding: 0 1;
        display: none;
        background: $error;
        color: $text;
        text-style: bold;
    }
    Banner.-shown {
        display: block;
    }
    Banner.-auth {
        background: $warning;
        color: $text;
    }
    """

    def on_mount(self) -> None:
        app: App[object] = self.app
        if hasattr(app, "problem"):
            self.watch(app, "problem", self._show, init=True)

    def _show(self, problem: Problem | None) -> None:
        self.set_class(problem is not None, "-shown")
        self.set_class(problem is not None and problem.kind == "auth", "-auth")
        self.update(problem.text if problem is not None else "")
