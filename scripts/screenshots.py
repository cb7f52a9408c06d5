"""Screenshots of the console for the README: ``screenshots/<screen>.svg`` and ``screenshots/<screen>.png``.

``make screenshots`` (or ``.venv/bin/python scripts/screenshots.py [screen…]``). Each screen is shown at
120x40 with the fixed data of the SVG snapshot tests (`tests.tsconsole.screens_fixtures`): no server is
needed and every run draws the same pictures. The SVG is Textual's own; the PNG is rendered from it with
resvg, in DejaVu Sans Mono instead of the "Fira Code" web font the SVG asks for (fetched from a CDN by
browsers, which resvg does not do), with ○ for the header's ⭘, which DejaVu lacks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tsconsole.screens_fixtures import SCREENS, SIZE, Setup, frozen_app, make_home  # noqa: E402

OUT = ROOT / "screenshots"
FONT = "DejaVu Sans Mono"
_FIRA = re.compile(r'font-family:\s*"?Fira Code"?')
# Glyphs no installed font has, and the nearest that DejaVu has (the header's icon).
_STAND_INS = {"⭘": "○"}


@contextmanager
def fixed_home() -> Iterator[Path]:
    """``$HOME`` pointed at a fresh folder holding the files the wizard and the try-it screen show."""
    saved = os.environ.get("HOME")
    with tempfile.TemporaryDirectory(prefix="tsconsole-screenshots-") as tmp:
        home = Path(tmp) / "home"
        make_home(home)
        os.environ["HOME"] = str(home)
        try:
            yield home
        finally:
            if saved is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = saved


async def capture(setup: Setup) -> str:
    """The SVG of the screen ``setup`` leaves, taken as the snapshot tests take theirs."""
    app = frozen_app()
    async with app.run_test(size=SIZE) as pilot:
        await setup(pilot)
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        await pilot.pause()
        await pilot.wait_for_scheduled_animations()
        return app.export_screenshot(simplify=True)  # as pytest-textual-snapshot takes them


def to_png(svg: str) -> bytes:
    import resvg_py

    svg = _FIRA.sub(f"font-family: {FONT}", svg)
    for missing, stand_in in _STAND_INS.items():
        svg = svg.replace(missing, stand_in)
    return bytes(resvg_py.svg_to_bytes(svg_string=svg, font_family=FONT, monospace_family=FONT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("screens", nargs="*", metavar="screen", help=f"any of {', '.join(SCREENS)} (default: all)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write them (default: {OUT})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.screens) - set(SCREENS))
    if unknown:
        parser.error(f"no such screen: {', '.join(unknown)} (choose among {', '.join(SCREENS)})")
    args.out.mkdir(parents=True, exist_ok=True)
    with fixed_home():
        for name in args.screens or SCREENS:
            svg = asyncio.run(capture(SCREENS[name]))
            (args.out / f"{name}.svg").write_text(svg, encoding="utf-8")
            png = args.out / f"{name}.png"
            png.write_bytes(to_png(svg))
            print(f"{png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}  ({png.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
