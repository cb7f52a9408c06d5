"""Every console screen at 120x40 with known data: no server, no clock, no changing pids or paths.

Shared by the SVG snapshot tests (``tests/tsconsole/test_snapshots.py``) and the README's screenshots
(``scripts/screenshots.py``), so both show exactly the same thing. Each ``show_*`` coroutine takes the
`Pilot` of a `frozen_app` and leaves one screen on display:

* the pollers are stopped first and the figures below fed in (`feed`);
* a screen's own first request (the try-it screen's model list, the log screen's list of logs) goes to
  the discard port and fails at once; the setup waits for that failure, clears its banner and toast,
  and feeds the screen fixed data through its own API instead;
* the archive wizard and the try-it screen show files under ``~``: call `make_home` on a fresh folder
  and point ``$HOME`` at it first; the paths on screen are then written ``~/…``, whatever that folder is.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual import events
from textual.pilot import Pilot
from textual.widgets import Input, Select, TextArea

from tsconsole.app import ConsoleApp
from tsconsole.client import Endpoints, Prediction
from tsconsole.pollers import ModelsSnapshot, SystemSnapshot, model_version
from tsconsole.screens.help import HelpScreen
from tsconsole.screens.logs import ALL, LogsScreen, tag
from tsconsole.screens.tryit import TryItScreen
from tsconsole.screens.wizard import ArchiveWizard
from tsconsole.widgets.path_input import PathInput

SIZE = (120, 40)
ADDRESS = "http://127.0.0.1:9"  # the discard port: nothing answers, and the pollers are stopped at once
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"

Setup = Callable[[Pilot], Awaitable[None]]


# ---- the server's figures -----------------------------------------------------------------------------------


def describe(name: str, version: str, workers: int, *, minimum: int = 1, queue: int = 0) -> dict:
    return {
        "modelName": name,
        "modelVersion": version,
        "modelUrl": f"{name}.mar",
        "runtime": "python",
        "deviceType": "cpu",
        "minWorkers": minimum,
        "maxWorkers": max(minimum, workers),
        "batchSize": 8,
        "maxBatchDelay": 50,
        "responseTimeout": 120,
        "startupTimeout": 120,
        "loadedAtStartup": True,
        "workers": [
            {"id": str(9000 + i), "status": "READY", "pid": 4100 + i, "memoryUsage": 300 * 2**20, "gpuUsage": "N/A"}
            for i in range(workers)
        ],
        "jobQueueStatus": {"remainingCapacity": 100 - queue, "pendingRequests": queue},
    }


def models_snapshot() -> ModelsSnapshot:
    rows = [
        (describe("digits", "1.0", 2), "1.0", 12.5, 3.2, 2.9, 7.4),
        (describe("digits", "2.0", 1), "1.0", 0.0, None, None, None),
        (describe("resnet", "1.0", 0, minimum=0), "1.0", 0.0, None, None, None),
        (describe("bert", "3.1", 1, queue=4), "3.1", 40.0, 18.75, 16.1, 41.0),
    ]
    models = tuple(
        dataclasses.replace(model_version(entry, default), requests_per_s=rps, latency_ms=ms, p50_ms=p50, p99_ms=p99)
        for entry, default, rps, ms, p50, p99 in rows
    )
    return ModelsSnapshot(models, metrics_available=True, taken=0.0, latency_histogram=True)


def system_snapshot(step: int) -> SystemSnapshot:
    return SystemSnapshot.parse(
        {
            "host": {
                "cpuPercent": 10 + (step * 7) % 60,
                "cpuCount": 16,
                "memoryUsed": (20 + step % 5) * 2**30,
                "memoryTotal": 64 * 2**30,
                "memoryPercent": (20 + step % 5) / 64 * 100,
                "diskUsed": 200 * 2**30,
                "diskTotal": 1000 * 2**30,
            },
            "gpus": [
                {
                    "id": 0,
                    "name": "NVIDIA H100 80GB HBM3",
                    "utilization": (step * 13) % 100,
                    "memoryUsed": (10 + step) * 2**30,
                    "memoryTotal": 80 * 2**30,
                    "temperature": 40 + step % 10,
                    "power": 120.0 + step * 3,
                }
            ],
            "gpuStatus": "ok",
            "workers": [
                {"model": "digits", "version": "1.0", "id": "9000", "pid": 4100, "status": "READY",
                 "cpuPercent": 12.0, "rss": 310 * 2**20, "gpu": 0, "gpuMemory": 900 * 2**20},
                {"model": "digits", "version": "1.0", "id": "9001", "pid": 4101, "status": "READY",
                 "cpuPercent": 9.0, "rss": 305 * 2**20, "gpu": 0, "gpuMemory": 880 * 2**20},
                {"model": "bert", "version": "3.1", "id": "9002", "pid": 4102, "status": "READY",
                 "cpuPercent": 95.5, "rss": 1200 * 2**20, "gpu": 0, "gpuMemory": 4 * 2**30},
            ],
            "listeners": {"inference": "http://127.0.0.1:8080", "management": "http://127.0.0.1:8081",
                          "metrics": "http://127.0.0.1:8082", "grpc_inference": "127.0.0.1:7070",
                          "grpc_management": "127.0.0.1:7071"},
        }
    )  # fmt: skip


# The server's log files, as the log screen follows them (``all``: every log but the metrics ones, tagged).
LOG_FILES = ("access_log", "model_log", "model_metrics", "ts_log", "ts_metrics")
_LOG = """\
ts_log      2025-06-02T09:14:02,118 [INFO ] MainThread server.app - Model store: /srv/model_store
ts_log      2025-06-02T09:14:02,120 [INFO ] MainThread server.app - Inference API bind to: http://127.0.0.1:8080
ts_log      2025-06-02T09:14:02,120 [INFO ] MainThread server.app - Management API bind to: http://127.0.0.1:8081
ts_log      2025-06-02T09:14:02,121 [INFO ] MainThread server.app - Metrics API bind to: http://127.0.0.1:8082
ts_log      2025-06-02T09:14:02,121 [INFO ] MainThread server.models.registry - Loading initial models: all
ts_log      2025-06-02T09:14:02,140 [INFO ] MainThread server.models.registry - Registered digits 1.0 (2 workers)
ts_log      2025-06-02T09:14:02,151 [INFO ] W-9000-digits_1.0 server.runtime.pool - Worker started, pid 4100
ts_log      2025-06-02T09:14:02,152 [INFO ] W-9001-digits_1.0 server.runtime.pool - Worker started, pid 4101
model_log   2025-06-02T09:14:02,230 [INFO ] W-9000-digits_1.0-stdout MODEL_LOG - [PID]4100
model_log   2025-06-02T09:14:02,231 [INFO ] W-9000-digits_1.0-stdout MODEL_LOG - Torch worker started.
model_log   2025-06-02T09:14:02,231 [INFO ] W-9001-digits_1.0-stdout MODEL_LOG - [PID]4101
model_log   2025-06-02T09:14:02,232 [INFO ] W-9001-digits_1.0-stdout MODEL_LOG - Torch worker started.
ts_log      2025-06-02T09:14:02,260 [INFO ] MainThread server.models.registry - Registered digits 2.0 (1 worker)
ts_log      2025-06-02T09:14:02,270 [INFO ] MainThread server.models.registry - Registered resnet 1.0 (0 workers)
ts_log      2025-06-02T09:14:02,281 [INFO ] MainThread server.models.registry - Registered bert 3.1 (1 worker)
ts_log      2025-06-02T09:14:02,290 [INFO ] W-9002-bert_3.1 server.runtime.pool - Worker started, pid 4102
model_log   2025-06-02T09:14:02,371 [INFO ] W-9002-bert_3.1-stdout MODEL_LOG - [PID]4102
model_log   2025-06-02T09:14:02,372 [INFO ] W-9002-bert_3.1-stdout MODEL_LOG - Torch worker started.
ts_log      2025-06-02T09:14:05,140 [INFO ] W-9000-digits_1.0 server.runtime.pool - Model loaded, pid 4100
ts_log      2025-06-02T09:14:05,146 [INFO ] W-9001-digits_1.0 server.runtime.pool - Model loaded, pid 4101
ts_log      2025-06-02T09:14:09,803 [INFO ] W-9002-bert_3.1 server.runtime.pool - Model loaded, pid 4102
ts_log      2025-06-02T09:14:09,804 [INFO ] MainThread server.app - Model server started.
access_log  2025-06-02T09:14:11,402 - /127.0.0.1:53514 "GET /ping HTTP/1.1" 200 2
access_log  2025-06-02T09:14:11,519 - /127.0.0.1:53514 "GET /models HTTP/1.1" 200 4
access_log  2025-06-02T09:14:12,007 - /127.0.0.1:53520 "POST /predictions/digits HTTP/1.1" 200 11
access_log  2025-06-02T09:14:12,033 - /127.0.0.1:53520 "POST /predictions/digits HTTP/1.1" 200 9
model_log   2025-06-02T09:14:12,861 [WARN ] W-9002-bert_3.1-stderr MODEL_LOG - Input truncated to 512 tokens
access_log  2025-06-02T09:14:12,990 - /127.0.0.1:53524 "POST /predictions/bert HTTP/1.1" 200 131
access_log  2025-06-02T09:14:13,125 - /127.0.0.1:53520 "POST /predictions/digits/2.0 HTTP/1.1" 200 10
model_log   2025-06-02T09:14:13,410 [ERROR] W-9001-digits_1.0-stderr MODEL_LOG - Invoking custom service failed.
model_log   Traceback (most recent call last):
model_log     File "/srv/ts/service.py", line 134, in predict
model_log       ret = self._entry_point(input_batch, self.context)
model_log     File "/srv/ts/torch_handler/vision_handler.py", line 41, in preprocess
model_log       image = Image.open(io.BytesIO(image))
model_log   PIL.UnidentifiedImageError: cannot identify image file <_io.BytesIO object>
access_log  2025-06-02T09:14:13,414 - /127.0.0.1:53520 "POST /predictions/digits HTTP/1.1" 503 5
ts_log      2025-06-02T09:14:14,022 [WARN ] MainThread server.runtime.pool - Worker W-9001-digits_1.0: 1 failure
access_log  2025-06-02T09:14:14,230 - /127.0.0.1:53531 "PUT /models/digits?min_worker=2 HTTP/1.1" 202 41
access_log  2025-06-02T09:14:14,512 - /127.0.0.1:53520 "POST /predictions/digits HTTP/1.1" 200 8
access_log  2025-06-02T09:14:14,716 - /127.0.0.1:53524 "POST /predictions/bert HTTP/1.1" 200 117
access_log  2025-06-02T09:14:15,002 - /127.0.0.1:53520 "POST /predictions/digits HTTP/1.1" 200 9
"""
LOG_LINES: tuple[tuple[str, str], ...] = tuple(
    (line[:12].strip(), line[12:]) for line in _LOG.splitlines()
)  # (log file, line as the server wrote it)

# What the digits example's ImageClassifier answers for a "3": its five most likely classes.
PREDICTION = Prediction(
    status=200,
    body=json.dumps({"3": 0.9712, "8": 0.0153, "5": 0.0071, "9": 0.0039, "2": 0.0016}).encode(),
    content_type="application/json",
    elapsed_ms=11.8,
)


# ---- files under ~ --------------------------------------------------------------------------------------------


def make_home(home: Path) -> None:
    """The files the wizard and the try-it screen show: ``~/models/digits/`` (model.py, digits_cnn.pth,
    index_to_name.json: the digits example's) and ``~/samples/digit_3.png``."""
    folder = home / "models" / "digits"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.py", "digits_cnn.pth", "index_to_name.json"):
        shutil.copy(DIGITS / name, folder / name)
    (home / "samples").mkdir(exist_ok=True)
    shutil.copy(DIGITS / "samples" / "digit_3_30.png", home / "samples" / "digit_3.png")


# ---- the setups -------------------------------------------------------------------------------------------------


def frozen_app(**kwargs) -> ConsoleApp:
    return ConsoleApp(Endpoints(ADDRESS, ADDRESS, ADDRESS), offer_start=False, **kwargs)


async def until(pilot: Pilot, condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def steady_cursors(pilot: Pilot) -> None:
    """No blinking: a focused input's cursor is always drawn, however long the screenshot takes."""
    for widget in pilot.app.screen.query(Input):
        widget.cursor_blink = False
    for area in pilot.app.screen.query(TextArea):
        area.cursor_blink = False


async def forget_failure(pilot: Pilot, screen_type: type, what: str) -> None:
    """Wait for ``screen_type``'s first request to fail (the banner shows), then take the banner and toast away."""
    app: ConsoleApp = pilot.app  # type: ignore[assignment]
    await until(pilot, lambda: isinstance(app.screen, screen_type) and app.problem is not None, what)
    await pilot.pause()
    app.problem = None
    app.clear_notifications()
    await pilot.pause()


async def feed(pilot: Pilot) -> None:
    """Stop the pollers, then give the app the figures above (30 system samples: full charts)."""
    app: ConsoleApp = pilot.app  # type: ignore[assignment]
    app.workers.cancel_group(app, "pollers")
    await pilot.pause()
    app.problem = None
    app.clear_notifications()
    for step in range(30):
        app.system = system_snapshot(step)
    app.models = models_snapshot()
    await pilot.pause()
    await pilot.pause()


async def show_dashboard(pilot: Pilot) -> None:
    await feed(pilot)


async def show_models(pilot: Pilot) -> None:
    await pilot.press("m")
    await feed(pilot)
    await pilot.press("down", "down")  # digits 2.0: not the default version
    await pilot.pause()


async def show_wizard(pilot: Pilot) -> None:
    """``~/models/digits`` dropped on the dashboard: the wizard opens and fills its fields from the folder."""
    app: ConsoleApp = pilot.app  # type: ignore[assignment]
    await feed(pilot)
    home = Path.home()
    app.post_message(events.Paste(f"'{home / 'models' / 'digits'}'"))  # as a terminal pastes a dropped folder

    def filled() -> bool:
        return isinstance(app.screen, ArchiveWizard) and any(field.value for field in app.screen.query("#model_name"))

    await until(pilot, filled, "the wizard filled from the dropped folder")
    await pilot.pause()
    for field in app.screen.query(Input):  # the paths as ~/…: the same on every machine
        if str(home) in field.value:
            field.value = field.value.replace(f"{home}/", "~/")
    steady_cursors(pilot)
    await pilot.pause()


async def show_logs(pilot: Pilot) -> None:
    """The log screen following every log, fed the lines above through its `LogView`."""
    app: ConsoleApp = pilot.app  # type: ignore[assignment]
    await feed(pilot)
    await pilot.press("l")
    await forget_failure(pilot, LogsScreen, "the log screen's list of logs to fail")
    screen = app.screen
    assert isinstance(screen, LogsScreen)
    screen.names = list(LOG_FILES)
    source = screen.query_one("#source", Select)
    source.set_options([(ALL, ALL)] + [(name, name) for name in LOG_FILES])
    source.value = ALL
    merged = screen.merged
    view = screen.log_view
    view.reset(tag_sources=True, tag_width=max(len(tag(name)) for name in merged))
    for name, line in LOG_LINES:
        view.push(tag(name), line)
    view.flush()
    screen.on_log_view_follow_changed()  # the status line: lines, keys
    await pilot.pause()
    await pilot.pause()


async def show_tryit(pilot: Pilot) -> None:
    """The try-it screen after sending ``~/samples/digit_3.png`` to digits: the answer shown."""
    app: ConsoleApp = pilot.app  # type: ignore[assignment]
    await feed(pilot)
    await pilot.press("t")
    await forget_failure(pilot, TryItScreen, "the try-it screen's list of models to fail")
    screen = app.screen
    assert isinstance(screen, TryItScreen)
    screen.post_message(TryItScreen.ModelsLoaded(sorted({m.name for m in models_snapshot().models})))
    await pilot.pause()
    screen.query_one("#model", Select).value = "digits"
    screen.query_one("#file", PathInput).value = "~/samples/digit_3.png"
    screen.post_message(TryItScreen.Answered("digits", PREDICTION))
    steady_cursors(pilot)
    await pilot.pause()
    await pilot.pause()


async def show_help(pilot: Pilot) -> None:
    app: ConsoleApp = pilot.app  # type: ignore[assignment]
    await feed(pilot)
    await pilot.press("question_mark")
    await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
    await pilot.pause()


# screen name -> how to show it (the README's screenshots, in this order)
SCREENS: dict[str, Setup] = {
    "dashboard": show_dashboard,
    "models": show_models,
    "wizard": show_wizard,
    "logs": show_logs,
    "tryit": show_tryit,
    "help": show_help,
}
