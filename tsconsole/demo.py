"""``make run``: the demo on the bundled, trained digits model (examples/digits).

Archives the model with `tsconsole archive` (our torch-model-archiver) into demo/model_store/, then
shows what the archive holds, as ``tsconsole archive --inspect`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

from archiver.cli import main as archive_main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"


def main() -> int:
    store = Path("demo") / "model_store"
    store.mkdir(parents=True, exist_ok=True)
    build = [
        "--model-name", "digits",
        "--version", "1.0",
        "--model-file", str(EXAMPLE / "model.py"),
        "--serialized-file", str(EXAMPLE / "digits_cnn.pth"),
        "--handler", "image_classifier",
        "--extra-files", str(EXAMPLE / "index_to_name.json"),
        "--export-path", str(store),
        "--force",
    ]  # fmt: skip
    print("$ tsconsole archive " + " ".join(build), flush=True)
    if archive_main(build) != 0:
        return 1
    mar = store / "digits.mar"
    print(f"\n$ tsconsole archive --inspect {mar}", flush=True)
    return archive_main(["--inspect", str(mar)])


if __name__ == "__main__":
    sys.exit(main())
