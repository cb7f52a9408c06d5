"""The console endpoints' building blocks: the tail reader, the log follower, upload names, system samples."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from server.console.logs import LogFollower, read_last_lines, sse_lines, tail_file
from server.console.system import GpuDetails, NvmlProbe, SystemSampler, WorkerRef
from server.console.uploads import safe_file_name
from server.errors import BadRequest
from server.runtime.pool import WorkerInfo
from server.telemetry.system import GpuStats, SystemStats

# ---- the tail reader -----------------------------------------------------------------------------------


def lines_of(text: bytes, n: int, **kw: int) -> list[str]:
    return read_last_lines(io.BytesIO(text), n, len(text), **kw)


@pytest.mark.parametrize("block", [1, 2, 3, 7, 64 * 1024])
def test_last_lines_at_any_block_size(block: int) -> None:
    text = b"".join(b"line %d\n" % i for i in range(50))
    assert lines_of(text, 3, block=block) == ["line 47", "line 48", "line 49"]
    assert lines_of(text, 1, block=block) == ["line 49"]
    assert lines_of(text, 50, block=block) == [f"line {i}" for i in range(50)]
    assert lines_of(text, 500, block=block) == [f"line {i}" for i in range(50)]


def test_last_lines_edge_cases() -> None:
    assert lines_of(b"", 5) == []
    assert lines_of(b"a\nb\n", 0) == []
    assert lines_of(b"only", 5) == ["only"]
    assert lines_of(b"a\nb\npartial", 2) == ["b", "partial"]  # a last line without newline counts
    assert lines_of(b"a\r\nb\r\n", 5) == ["a", "b"]
    assert lines_of(b"\n\n\n", 2) == ["", ""]
    assert lines_of("é\nü\n".encode(), 1, block=1) == ["ü"]
    assert lines_of(b"bad \xff byte\n", 1) == ["bad \ufffd byte"]


def test_last_lines_read_only_the_end() -> None:
    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            Counting.read_bytes += len(data)
            return data

    text = b"x" * 10_000_000 + b"\nlast one\n"
    f = Counting(text)
    assert read_last_lines(f, 1, len(text), block=4096) == ["last one"]
    assert Counting.read_bytes <= 8192


def test_last_lines_are_capped_in_bytes() -> None:
    text = b"".join(b"%05d\n" % i for i in range(1000))  # 6 bytes a line
    assert lines_of(text, 1000, max_bytes=60) == [f"{i:05d}" for i in range(991, 1000)]


def test_tail_file(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"{i}\n" for i in range(100_000)))
    assert tail_file(path, 2) == ["99998", "99999"]


# ---- the follower --------------------------------------------------------------------------------------


def test_follower_history_new_lines_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"one\ntwo\nthree\nhalf")
    follower = LogFollower(path)
    try:
        assert follower.start(2) == ["two", "three"]  # the partial line waits for its newline
        assert follower.poll() == ([], False)
        with open(path, "ab") as f:
            f.write(b" a line\nfour\nfi")
        assert follower.poll() == (["half a line", "four"], False)
        with open(path, "ab") as f:
            f.write(b"ve\n")
        assert follower.poll() == (["five"], False)
        assert follower.poll() == ([], False)
    finally:
        follower.close()


def test_follower_survives_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("old\n")
    follower = LogFollower(path)
    try:
        follower.start(0)
        with open(path, "a") as f:
            f.write("last of the old file\nunfinished")
        path.rename(tmp_path / "x.log.1")  # RotatingFileHandler: rename, then a new file
        assert follower.poll() == (["last of the old file"], False)
        assert follower.poll() == ([], False)  # no new file yet: keep the old one
        path.write_text("first of the new file\n")
        # the rotation ends the old file's unfinished line
        assert follower.poll() == (["unfinished", "first of the new file"], False)
        path.write_text("")  # truncated in place
        assert follower.poll() == ([], False)
        path.write_text("after truncation\n")
        assert follower.poll() == (["after truncation"], False)
    finally:
        follower.close()


def test_follower_reads_a_burst_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("")
    follower = LogFollower(path, chunk=4096)
    try:
        follower.start(0)
        path.write_text("".join(f"burst line {i}\n" for i in range(5000)))
        got: list[str] = []
        more = True
        while more:
            lines, more = follower.poll()
            got += lines
        assert got == [f"burst line {i}" for i in range(5000)]
    finally:
        follower.close()


def test_server_sent_events_keep_each_line_whole() -> None:
    assert sse_lines(["a", "", " b"]) == b"data: a\n\ndata: \n\ndata:  b\n\n"
    # characters str.splitlines() (and so the client) would split on are sent as spaces
    assert sse_lines(["x\ry\x0bz\u2028w"]) == b"data: x y z w\n\n"


# ---- upload names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("model.pth", "model.pth"),
        ("../x.py", "x.py"),
        ("../../../../etc/cron.d/evil", "evil"),
        ("/etc/passwd", "passwd"),
        ("C:\\Users\\me\\handler.py", "handler.py"),
        ("..\\..\\x.py", "x.py"),
        ("dir/sub/", "sub"),
        ("  spaced.txt ", "spaced.txt"),
        ("ünïcode.json", "ünïcode.json"),
        ("..%2F..%2Fx.py", "x.py"),  # percent-escaped, as aiohttp's client sends names
        ("my%20model.pth", "my model.pth"),
    ],
)
def test_upload_names_are_reduced_to_their_base_name(raw: str, safe: str) -> None:
    assert safe_file_name(raw) == safe


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        ".",
        "..",
        "a/..",
        "/",
        ".bashrc",
        "../.ssh",
        "x\x00.py",
        "a\nb",
        "a,b",
        "*.py",
        "[x]",
        "%2e%2e",
        "x%00",
    ],
)
def test_hostile_upload_names_are_refused(raw: str | None) -> None:
    with pytest.raises(BadRequest):
        safe_file_name(raw, "extra_files")


def test_overlong_names_are_refused() -> None:
    with pytest.raises(BadRequest, match="255"):
        safe_file_name("x" * 256)


# ---- system samples ------------------------------------------------------------------------------------


class FakeSource:
    def __init__(self, gpus: tuple[GpuStats, ...] = ()) -> None:
        self.gpus = gpus
        self.closed = False

    def sample(self) -> SystemStats:
        return SystemStats(
            cpu_percent=12.5, memory_used_mb=1024.0, memory_percent=25.0, disk_used_gb=2.0, gpus=self.gpus
        )

    def close(self) -> None:
        self.closed = True


class FakeProbe:
    def __init__(self, details: GpuDetails | None = None) -> None:
        self._details = details or GpuDetails()
        self.asked: list[list[int]] = []
        self.status_calls = 0

    def status(self) -> str:
        self.status_calls += 1
        return "NVML is not available: no NVIDIA driver"

    def details(self, indices: list[int]) -> GpuDetails:
        self.asked.append(indices)
        return self._details

    def close(self) -> None:
        pass


def test_an_injected_gpu_and_worker_figures() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        source = FakeSource((GpuStats(0, 87.0, 2048.0, 81559.0, "NVIDIA H100 80GB HBM3"), GpuStats(1)))
        probe = FakeProbe(GpuDetails({0: 61.0}, {0: 312.5}, {busy.pid: 1536 * 1024 * 1024}))
        sampler = SystemSampler(source, probe)
        workers = [
            WorkerRef("m", "1.0", WorkerInfo(7, busy.pid, "READY", 0.0, 0)),
            WorkerRef("m", "1.0", WorkerInfo(8, None, "STOPPED", 0.0, None)),
        ]
        first = sampler.sample(workers)
        assert first["host"]["cpuPercent"] == 12.5
        assert first["host"]["memoryUsed"] == 1024 * 1024 * 1024
        assert first["host"]["memoryPercent"] == 25.0
        assert first["host"]["diskUsed"] == 2 * 1024**3
        assert first["host"]["cpuCount"] >= 1
        assert first["host"]["memoryTotal"] > 0 and first["host"]["diskTotal"] > 0
        assert first["gpuStatus"] == "ok"
        assert first["gpus"] == [
            {
                "id": 0,
                "name": "NVIDIA H100 80GB HBM3",
                "utilization": 87.0,
                "memoryUsed": 2048 * 1024 * 1024,
                "memoryTotal": 81559 * 1024 * 1024,
                "temperature": 61.0,
                "power": 312.5,
            },
            {
                "id": 1,
                "name": None,
                "utilization": None,
                "memoryUsed": None,
                "memoryTotal": None,
                "temperature": None,
                "power": None,
            },
        ]
        assert probe.asked == [[0, 1]]
        worker, idle = first["workers"]
        assert worker["model"] == "m" and worker["version"] == "1.0" and worker["id"] == "7"
        assert worker["pid"] == busy.pid and worker["status"] == "READY" and worker["gpu"] == 0
        assert worker["cpuPercent"] is None  # the first sample only primes the process
        assert worker["rss"] > 0
        assert worker["gpuMemory"] == 1536 * 1024 * 1024
        assert idle == {
            "model": "m",
            "version": "1.0",
            "id": "8",
            "pid": None,
            "status": "STOPPED",
            "cpuPercent": None,
            "rss": None,
            "gpu": None,
            "gpuMemory": None,
        }
        time.sleep(0.3)
        second = sampler.sample(workers)
        assert second["workers"][0]["cpuPercent"] > 20  # a busy loop, measured since the first sample
        busy.kill()
        busy.wait()
        third = sampler.sample(workers)
        assert third["workers"][0]["cpuPercent"] is None and third["workers"][0]["rss"] is None
        assert busy.pid not in sampler._procs
        sampler.close()
        assert not source.closed  # an injected source belongs to whoever injected it
    finally:
        busy.kill()
        busy.wait()


def test_no_gpu_says_why_and_asks_once() -> None:
    probe = FakeProbe()
    sampler = SystemSampler(FakeSource(), probe)
    for _ in range(2):
        doc = sampler.sample([])
        assert doc["gpus"] == [] and doc["workers"] == []
        assert doc["gpuStatus"] == "NVML is not available: no NVIDIA driver"
    assert probe.status_calls == 1 and probe.asked == []


def test_the_real_sources_never_fail_without_nvml() -> None:
    sampler = SystemSampler()
    try:
        doc = sampler.sample([WorkerRef("me", "1", WorkerInfo(1, os.getpid(), "READY", 0.0, None))])
        assert set(doc) == {"host", "gpus", "gpuStatus", "workers"}
        assert isinstance(doc["host"]["cpuPercent"], float)
        assert doc["host"]["memoryUsed"] <= doc["host"]["memoryTotal"]
        assert isinstance(doc["gpuStatus"], str) and doc["gpuStatus"]
        if not doc["gpus"]:
            assert doc["gpuStatus"] != "ok"
        assert doc["workers"][0]["rss"] > 0
    finally:
        sampler.close()


# ---- NVML (a fake pynvml module: this host may have no GPU) ---------------------------------------------


def fake_nvml(monkeypatch: pytest.MonkeyPatch, init_error: Exception | None = None, **functions) -> None:
    module = types.ModuleType("pynvml")

    def init() -> None:
        if init_error is not None:
            raise init_error

    module.nvmlInit = init
    module.nvmlShutdown = lambda: None
    module.NVML_TEMPERATURE_GPU = 0
    for name, fn in functions.items():
        setattr(module, name, fn)
    monkeypatch.setitem(sys.modules, "pynvml", module)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RuntimeError("NVML Shared Library Not Found"), "NVML is not available: no NVIDIA driver"),
        (RuntimeError("Driver Not Loaded"), "NVML is not available: the NVIDIA driver is not loaded"),
        (RuntimeError("Insufficient Permissions"), "NVML is not available: Insufficient Permissions"),
    ],
)
def test_nvml_reasons(monkeypatch: pytest.MonkeyPatch, error: Exception, status: str) -> None:
    fake_nvml(monkeypatch, init_error=error)
    probe = NvmlProbe()
    assert probe.status().startswith(status)
    assert probe.details([0]) == GpuDetails()


def test_nvml_not_installed_or_without_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert NvmlProbe().status() == "NVML is not available: the nvidia-ml-py package is not installed"
    fake_nvml(monkeypatch, nvmlDeviceGetCount=lambda: 0)
    assert NvmlProbe().status() == "NVML found no GPU on this host"


def test_the_real_sampler_with_a_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_supported(*_: object) -> None:
        raise RuntimeError("Not Supported")

    mib = 1024 * 1024
    procs = {
        "h0": [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=300 * mib)],
        "h1": [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=None)],
    }
    fake_nvml(
        monkeypatch,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=512 * mib, total=1024 * mib),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40),
        nvmlDeviceGetName=lambda h: b"Fake GPU",
        nvmlDeviceGetTemperature=lambda h, sensor: 55 if h == "h0" else not_supported(),
        nvmlDeviceGetPowerUsage=lambda h: 123_456 if h == "h0" else not_supported(),
        nvmlDeviceGetComputeRunningProcesses=lambda h: procs[h],
        nvmlDeviceGetGraphicsRunningProcesses=lambda h: procs[h],  # listed twice: counted once
    )
    sampler = SystemSampler()
    try:
        doc = sampler.sample([WorkerRef("m", "1", WorkerInfo(1, os.getpid(), "READY", 0.0, 0))])
    finally:
        sampler.close()
    assert doc["gpuStatus"] == "ok"
    assert doc["gpus"][0] == {
        "id": 0,
        "name": "Fake GPU",
        "utilization": 40.0,
        "memoryUsed": 512 * mib,
        "memoryTotal": 1024 * mib,
        "temperature": 55.0,
        "power": 123.456,
    }
    assert doc["gpus"][1]["temperature"] is None and doc["gpus"][1]["power"] is None
    assert doc["workers"][0]["gpuMemory"] == 300 * mib
