"""One figure with its recent history: a label, the current value and a Sparkline."""

from __future__ import annotations

from collections import deque

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Sparkline

HISTORY = 60


class Meter(Horizontal):
    """``meter.push(42.0, "42% of 8 cores")``; ``None`` values are shown but not charted."""

    DEFAULT_CSS = """
    Meter {
        height: 1;
        width: 1fr;
    }
    Meter > .meter--label {
        width: 10;
        color: $text-muted;
    }
    Meter > .meter--value {
        width: 24;
    }
    Meter > Sparkline {
        width: 1fr;
        min-width: 8;
    }
    """

    def __init__(self, label: str, *, id: str | None = None, history: int = HISTORY) -> None:
        super().__init__(id=id)
        self.label = label
        self.history: deque[float] = deque(maxlen=history)

    def compose(self) -> ComposeResult:
        yield Label(self.label, classes="meter--label", markup=False)
        yield Label("N/A", classes="meter--value", markup=False)
        yield Sparkline([], summary_function=max)

    def push(self, value: float | None, text: str) -> None:
        self.query_one(".meter--value", Label).update(text)
        if value is not None:
            self.history.append(value)
            self.query_one(Sparkline).data = list(self.history)

    @property
    def text(self) -> str:
        return str(self.query_one(".meter--value", Label).content)
