"""A DataTable that is diffed, never cleared: keyed rows, changed cells updated in place.

So a refresh every two seconds keeps the cursor on the row the user chose, and the scroll where it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

Cell = str | Text


class KeyedTable(DataTable[Cell]):
    """``KeyedTable([("model", "Model"), …], sort_columns=("model",))``; then ``sync({key: cells})``."""

    def __init__(
        self,
        columns: Sequence[tuple[str, str]],
        *,
        sort_columns: Sequence[str] = (),
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self._column_spec = list(columns)
        self._sort_columns = tuple(sort_columns)
        self._cells: dict[str, tuple[Cell, ...]] = {}

    def on_mount(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return [str(self.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(self.row_count)]

    @property
    def selected_key(self) -> str | None:
        if not self.row_count or self.cursor_row < 0:
            return None
        try:
            return str(self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value)
        except Exception:
            return None

    def select_key(self, key: str) -> bool:
        try:
            self.move_cursor(row=self.get_row_index(key))
        except RowDoesNotExist:
            return False
        return True

    def sync(self, rows: Mapping[str, Sequence[Cell]]) -> None:
        """Make the table show exactly ``rows`` (key → cells), touching only what changed."""
        selected = self.selected_key
        columns = [key for key, _ in self._column_spec]
        added = False
        with self.app.batch_update():
            for key in [k for k in self._cells if k not in rows]:
                self.remove_row(key)
                del self._cells[key]
            for key, cells in rows.items():
                cells = tuple(cells)
                old = self._cells.get(key)
                if old is None:
                    self.add_row(*cells, key=key)
                    added = True
                elif old != cells:
                    for column, before, after in zip(columns, old, cells, strict=True):
                        if before != after:
                            self.update_cell(key, column, after)
                self._cells[key] = cells
            if added and self._sort_columns:
                self.sort(*self._sort_columns, key=_plain)
            if selected is not None and selected in self._cells and self.selected_key != selected:
                self.select_key(selected)


def _plain(values: object) -> object:
    if isinstance(values, tuple):
        return tuple(str(v) for v in values)
    return str(values)
