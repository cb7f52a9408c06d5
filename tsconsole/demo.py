"""``make run``: serve the bundled, trained digits model (examples/digits) and show a real prediction.

1. archives the model with `tsconsole archive` into demo/model_store/digits.mar;
2. runs `tsconsole serve` on it (logs in demo/logs);
3. classifies a few of the bundled sample digits over HTTP and prints how to call the server;
4. keeps serving until Ctrl-C, then stops the server and its workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from archiver.cli import main as archive_main
from tsconsole.client import read_key_file
from tsconsole.connection import KEY_FILE

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"
URL = "http://127.0.0.1:8080"


def build_archive(store: Path) -> None:
    build = [
        "--model-name", "digits",
        "--version", "1.0",
        "--model-file", str(EXAMPLE / "model.py"),
        "--serialized-file", str(EXAMPLE / "digits_cnn.pth"),
        "--handler", str(EXAMPLE / "digits_handler.py"),
        "--extra-files", str(EXAMPLE / "index_to_name.json"),
        "--export-path", str(store),
        "--force",
    ]  # fmt: skip
    print("$ tsconsole archive " + " ".join(build), flush=True)
    if archive_main(build) != 0:
        raise SystemExit(1)


def start_server(store: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tsconsole", "serve", "--model-store", str(store), "--models", "digits.mar", "--ncs"]
    print("$ tsconsole serve " + " ".join(cmd[4:]), flush=True)
    env = dict(os.environ, LOG_LOCATION=str(Path("demo") / "logs"), TSCONSOLE_DETACHED="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Model server started." in line:
            return proc
        print(line, end="")
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


def main() -> int:
    store = Path("demo") / "model_store"
    store.mkdir(parents=True, exist_ok=True)
    build_archive(store)
    server = start_server(store)
    try:
        _, key = read_key_file(Path(KEY_FILE))  # token authorization is on, as in TorchServe
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        print(f"\nServing digits on {URL}. Classifying the bundled samples:")
        with httpx.Client(timeout=60, headers=auth) as client:
            for sample in sorted((EXAMPLE / "samples").glob("digit_*.png"))[::3]:
                start = time.perf_counter()
                r = client.put(f"{URL}/predictions/digits", content=sample.read_bytes())
                ms = (time.perf_counter() - start) * 1000
                scores = json.loads(r.text)
                best = next(iter(scores))
                truth = sample.name.split("_")[1]
                print(f"  {sample.name:<16} -> {best}  (p={scores[best]:.3f}, true {truth}, {ms:.0f} ms)")
        sample = EXAMPLE / "samples" / "digit_7_9.png"
        print("\nTry it yourself:")
        header = f' -H "Authorization: Bearer {key}"' if key else ""
        print(f"  curl {URL}/predictions/digits -T {sample.relative_to(ROOT)}{header}")
        print(f"  .venv/bin/tsconsole predict digits {sample.relative_to(ROOT)}   # finds ./{KEY_FILE} itself")
        if key:
            print(
                f"The inference key is in ./{KEY_FILE} (it expires after an hour; the file goes when the server stops)."
            )
        print("Logs: demo/logs/. Press Ctrl-C to stop.", flush=True)
        while server.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
        print("\nServer stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
