"""Where the server is and how to authenticate to it; starting the bundled one. Imports nothing from Textual.

Shared by the console and the scripting commands (``tsconsole models``, ``register``, ``scale``…), so
both find the server and its token the same way.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tsconsole.client import ApiError, Endpoints, local_endpoints, read_key_file

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})
KEY_FILE = "key_file.json"


def is_local(url: str) -> bool:
    """A Unix socket or a loopback address: a server on this machine (or an SSH tunnel's end)."""
    if url.startswith("unix:"):
        return True
    host = urlsplit(url).hostname or ""
    return host in LOCAL_HOSTS or host.startswith("127.")


def is_auth_error(exc: BaseException) -> bool:
    """The server refused our token (TorchServe answers 400 InvalidKeyException; others 401/403)."""
    return isinstance(exc, ApiError) and (exc.status in (401, 403) or "InvalidKey" in exc.type)


TOKEN_ENV = "TSCONSOLE_TOKEN"  # the management key of a server elsewhere
INFERENCE_TOKEN_ENV = "TSCONSOLE_INFERENCE_TOKEN"  # its inference key


def endpoints_from(
    inference: str | None = None,
    management: str | None = None,
    metrics: str | None = None,
    *,
    key_file: Path | None = None,
    token: str | None = None,
    inference_token: str | None = None,
) -> Endpoints:
    """Addresses from flags, else from `local_endpoints`; the keys as `with_token` finds them."""
    defaults = local_endpoints()
    endpoints = Endpoints(
        inference=inference or defaults.inference,
        management=management or defaults.management,
        metrics=metrics or defaults.metrics,
    )
    return with_token(endpoints, key_file, token=token, inference_token=inference_token)


def find_key_file(key_file: Path | None = None) -> Path | None:
    """``key_file``, else ``./key_file.json``, else the one the background server (`tsconsole start`) wrote."""
    if key_file is not None:
        return key_file
    here = Path.cwd() / KEY_FILE
    if here.is_file():
        return here
    from tsconsole.daemon import running

    record = running()
    return Path(record.key_file) if record is not None and record.key_file else None


def with_token(
    endpoints: Endpoints,
    key_file: Path | None = None,
    *,
    token: str | None = None,
    inference_token: str | None = None,
    env: dict[str, str] | None = None,
) -> Endpoints:
    """The endpoints with their keys: given ones (``--token``), else ``TSCONSOLE_TOKEN`` /
    ``TSCONSOLE_INFERENCE_TOKEN``, else, for a server on this machine, its ``key_file.json`` (`find_key_file`).
    One management key given alone serves for inference too."""
    env = dict(os.environ) if env is None else env
    management_key = token or env.get(TOKEN_ENV) or None
    inference_key = inference_token or env.get(INFERENCE_TOKEN_ENV) or None
    if management_key is None and inference_key is None and is_local(endpoints.management):
        path = find_key_file(key_file)
        if path is not None:
            management_key, inference_key = read_key_file(path)
    management_key = management_key or endpoints.token  # keys given before (flags) stay when no file has any
    inference_key = inference_key or endpoints.inference_token or management_key
    return dataclasses.replace(endpoints, token=management_key, inference_token=inference_key)


def refused_hint() -> str:
    """What to do when the server refused our key (or we had none)."""
    return (
        f"the server wants a key: run beside its key_file.json, or pass --token KEY (or set {TOKEN_ENV}; "
        f"{INFERENCE_TOKEN_ENV} for a separate inference key)"
    )


@dataclass(frozen=True)
class StartResult:
    ok: bool
    output: str


def local_config(endpoints: Endpoints, base: Path | None = None) -> str:
    """config.properties text for a server on 127.0.0.1 at the ports of ``endpoints``.

    Starts from ``./config.properties`` when there is one, so the user's settings still apply, and
    replaces only the three addresses (forced onto the loopback interface). Unless that file chooses a
    metrics mode, the server keeps its metrics in Prometheus form, which the dashboard's rates need.
    """
    lines: list[str] = []
    keys = {"inference_address", "management_address", "metrics_address"}
    if base is not None and base.is_file():
        for line in base.read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if key not in keys:
                lines.append(line)
    if not any(line.split("=", 1)[0].strip() == "metrics_mode" for line in lines):
        lines.append("metrics_mode=prometheus")
    for role in ("inference", "management", "metrics"):
        url = getattr(endpoints, role)
        if url.startswith("unix:"):
            lines.append(f"{role}_address={url}")
            continue
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        lines.append(f"{role}_address={parts.scheme or 'http'}://127.0.0.1:{port}")
    return "\n".join(lines) + "\n"


def start_server(
    model_store: Path, endpoints: Endpoints, *, cwd: Path | None = None, timeout: float = 300
) -> StartResult:
    """``python -m tsconsole start --model-store STORE --enable-model-api``, on 127.0.0.1 at our ports.

    Blocking (it waits until the server is up): call it from a worker thread.
    """
    cwd = cwd or Path.cwd()
    model_store.mkdir(parents=True, exist_ok=True)
    handle, config = tempfile.mkstemp(prefix="tsconsole-console-", suffix=".properties")
    with os.fdopen(handle, "w") as f:
        f.write(local_config(endpoints, cwd / "config.properties"))
    argv = [
        sys.executable, "-m", "tsconsole", "start",
        "--model-store", str(model_store), "--enable-model-api", "--ts-config", config,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TS_CONFIG_FILE"}
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return StartResult(False, f"the server did not start within {timeout:.0f} s")
    except OSError as exc:
        return StartResult(False, str(exc))
    finally:
        Path(config).unlink(missing_ok=True)
    return StartResult(done.returncode == 0, (done.stdout + done.stderr).strip())


def local_store_dir(management: str) -> Path | None:
    """The model store of the background server this machine runs at ``management``, if it is one of ours.

    The archive wizard then builds archives in place (with a progress bar) instead of uploading them.
    """
    from tsconsole.daemon import running

    record = running()
    if record is None or not is_local(management) or record.management.rstrip("/") != management.rstrip("/"):
        return None
    store = Path(record.model_store)
    return store if store.is_dir() else None
