"""``tsconsole start`` / ``stop`` / ``status``: the server as a background process with a pid file.

The pid file (``$TSCONSOLE_PID_FILE``, default ``<tmp>/.tsconsole.pid``) is JSON: the server's pid,
its addresses (REST and gRPC) and log folder. The server runs in its own session, so ``stop`` can make
sure that no worker process outlives it. ``status`` asks the server (ping, then the management API with the
management key of its key_file.json) for its health and for each model version's ready workers, and why the
others keep failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil

from tsconsole.client import read_key_file, split_socket
from tsconsole.connection import KEY_FILE

STARTED = "Model server started."


def pid_file() -> Path:
    return Path(os.environ.get("TSCONSOLE_PID_FILE") or Path(tempfile.gettempdir()) / ".tsconsole.pid")


@dataclass
class ServerRecord:
    pid: int
    inference: str
    management: str
    metrics: str
    log_location: str
    model_store: str
    output: str  # the detached server's stdout/stderr
    grpc_inference: str = ""  # host:port; "" in a record written before tsconsole knew gRPC
    grpc_management: str = ""
    key_file: str = ""  # the server's key_file.json ("" when token authorization is off)

    def save(self) -> None:
        path = pid_file()
        path.write_text(json.dumps(asdict(self)))
        path.chmod(0o600)

    @classmethod
    def load(cls) -> ServerRecord | None:
        try:
            data = json.loads(pid_file().read_text())
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})  # a newer tsconsole's keys: ignored
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def lines(self) -> list[str]:
        """The addresses and the log folder, as ``start`` and ``status`` print them below their first line."""
        out = [f"  inference:  {self.inference}", f"  management: {self.management}"]
        grpc = {"inference": self.grpc_inference, "management": self.grpc_management}
        if any(grpc.values()):  # an older record has no gRPC addresses: no line rather than a wrong one
            out.append("  grpc:       " + ", ".join(f"{target} ({role})" for role, target in grpc.items() if target))
        out.append(f"  logs:       {self.log_location}")
        return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def running() -> ServerRecord | None:
    record = ServerRecord.load()
    if record is not None and alive(record.pid):
        return record
    return None


def start(argv: list[str], settings, *, timeout: float = 600.0) -> int:
    """Start the server detached; return once it is up (or failed)."""
    existing = running()
    if existing is not None:
        print(
            f"tsconsole is already running (pid {existing.pid}), please use `tsconsole stop` to stop it.",
            file=sys.stderr,
        )
        return 1
    log_dir = Path(settings.log_location)
    log_dir.mkdir(parents=True, exist_ok=True)
    output = (log_dir / "server_console.log").resolve()
    env = dict(os.environ, TSCONSOLE_DETACHED="1")
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    record = ServerRecord(
        pid=proc.pid,
        inference=settings.inference_address.url,
        management=settings.management_address.url,
        metrics=settings.metrics_address.url,
        grpc_inference=settings.grpc_inference_address.target,
        grpc_management=settings.grpc_management_address.target,
        model_store=str(settings.model_store),
        log_location=str(log_dir.resolve()),
        output=str(output),
        key_file="" if settings.disable_token_authorization else str(Path.cwd() / KEY_FILE),  # the server's cwd
    )
    record.save()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file().unlink(missing_ok=True)
            print(f"tsconsole: the server failed to start (exit {proc.returncode}):", file=sys.stderr)
            print(output.read_text(errors="replace")[-4000:], file=sys.stderr)
            return 1
        if STARTED in output.read_text(errors="replace"):
            print(f"tsconsole started (pid {proc.pid})")
            print("\n".join(record.lines()))
            return 0
        time.sleep(0.2)
    print(f"tsconsole: the server did not come up within {timeout:.0f} s; see {output}", file=sys.stderr)
    return 1


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group: the server and its workers."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.info["pid"])
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def stop(*, timeout: float = 60.0) -> int:
    """SIGTERM the server, wait for it and its workers, SIGKILL whatever is left after ``timeout``."""
    record = running()
    if record is None:
        pid_file().unlink(missing_ok=True)
        print("tsconsole is not currently running.")
        return 0
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while (alive(record.pid) or group_members(record.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in group_members(record.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pid_file().unlink(missing_ok=True)
    print("tsconsole has stopped.")
    return 0


def _http(url: str, key: str | None) -> tuple[str, httpx.Client]:
    """The base URL and a client for one of the server's addresses (``unix:`` ones too), with ``key``."""
    base, socket = split_socket(url)
    transport = httpx.HTTPTransport(uds=socket) if socket else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return base, httpx.Client(transport=transport, timeout=5, headers=headers)


def _model_lines(versions: list[dict[str, Any]]) -> list[str]:
    """``  <name> <version>: <ready>/<workers> workers ready[; failing: <reason>]`` for each version."""
    out = []
    for version in versions:
        workers = version.get("workers") or []
        ready = sum(1 for w in workers if w.get("status") == "READY")
        line = f"  {version.get('modelName')} {version.get('modelVersion')}: {ready}/{len(workers)} workers ready"
        failures = [w["lastFailure"] for w in workers if w.get("status") != "READY" and w.get("lastFailure")]
        if failures:
            line += "; failing: " + " ".join(str(failures[0]).split())  # one line, however the reason reads
        out.append(line)
    return out


def _error_text(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {response.status_code}" + (f": {message}" if message else "")


def model_lines(record: ServerRecord, key: str | None) -> list[str]:
    """A line per model version, with its ready workers and why the others fail, from the management API;
    one line saying why not when that API does not answer or refuses."""
    try:
        base, client = _http(record.management, key)
        with client:
            names: list[str] = []
            params: dict[str, str] = {"limit": "100"}
            while True:
                page = client.get(f"{base}/models", params=params)
                if page.status_code != 200:
                    return [f"  models:     the management API refused: {_error_text(page)}"]
                data = page.json()
                names += [str(m["modelName"]) for m in data.get("models", [])]
                token = data.get("nextPageToken")
                if not token or token == params.get("next_page_token"):
                    break
                params["next_page_token"] = str(token)
            lines = []
            for name in names:
                answer = client.get(f"{base}/models/{quote(name, safe='')}/all")
                if answer.status_code == 404:  # unregistered meanwhile
                    continue
                if answer.status_code != 200:
                    return [f"  models:     the management API refused: {_error_text(answer)}"]
                lines += _model_lines(answer.json())
            return lines
    except httpx.HTTPError as exc:
        return [f"  models:     the management API at {record.management} did not answer ({type(exc).__name__})"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return [f"  models:     the management API at {record.management} gave an answer tsconsole cannot read"]


def status() -> int:
    """Exit 0 and describe the server when it runs; exit 3 when it does not (as LSB init scripts do)."""
    record = running()
    if record is None:
        print("tsconsole is not currently running.")
        return 3
    health = "not answering"
    management_key, key = read_key_file(Path(record.key_file)) if record.key_file else (None, None)
    try:
        base, client = _http(record.inference, key)
        with client:
            answer = client.get(f"{base}/ping").json()
            health = answer.get("status") or answer.get("message") or "unknown"
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    print(f"tsconsole is running (pid {record.pid}): {health}")
    print("\n".join(record.lines() + model_lines(record, management_key)))
    return 0
