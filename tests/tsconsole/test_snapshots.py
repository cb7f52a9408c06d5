"""SVG snapshots of every console screen at 120x40, with known data (no server, no clock, no changing paths).

The setups live in `tests.tsconsole.screens_fixtures`, shared with ``scripts/screenshots.py`` (the README's
screenshots): the pollers are stopped before the data is fed in, so each snapshot shows exactly those figures.
Update after a deliberate change of the look: ``pytest tests/tsconsole/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tsconsole.screens_fixtures import (
    SIZE,
    feed,
    frozen_app,
    make_home,
    show_dashboard,
    show_help,
    show_logs,
    show_models,
    show_tryit,
    show_wizard,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``~`` with the files the wizard and the try-it screen show (as ``~/…``)."""
    folder = tmp_path / "home"
    make_home(folder)
    monkeypatch.setenv("HOME", str(folder))
    return folder


def test_dashboard_snapshot(snap_compare) -> None:
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=show_dashboard)


def test_models_screen_snapshot(snap_compare) -> None:
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=show_models)


def test_read_only_models_screen_snapshot(snap_compare) -> None:
    async def models_screen(pilot) -> None:
        await pilot.press("m")
        await feed(pilot)

    assert snap_compare(frozen_app(read_only=True), terminal_size=SIZE, run_before=models_screen)


def test_wizard_snapshot(snap_compare, home: Path) -> None:
    """A model folder dropped on the dashboard: the wizard, filled from model.py, a .pth and index_to_name.json."""
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=show_wizard)


def test_logs_screen_snapshot(snap_compare) -> None:
    """Every log merged and tagged, levels coloured, following the end."""
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=show_logs)


def test_tryit_screen_snapshot(snap_compare, home: Path) -> None:
    """A digit image sent to digits, its answer shown as pretty JSON."""
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=show_tryit)


def test_help_screen_snapshot(snap_compare) -> None:
    """Every key binding, over the dashboard."""
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=show_help)
