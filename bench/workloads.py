"""The workloads: one model archive, one request body, server configurations and concurrencies each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    workers: int
    batch_size: int = 1
    max_batch_delay: int = 0  # ms

    @property
    def label(self) -> str:
        text = f"w{self.workers} b{self.batch_size}"
        return text + (f" d{self.max_batch_delay}" if self.batch_size > 1 else "")


@dataclass(frozen=True)
class Workload:
    name: str
    body: str  # asset name of the request body
    content_type: str
    configs: tuple[Config, ...]
    concurrencies: tuple[int, ...]
    duration_s: int  # one measured window
    about: str


WORKLOADS = {
    "noop": Workload(
        "noop", "noop.json", "application/json", (Config(1), Config(2)), (1, 16, 64), 10,
        "W1: a handler returning the length of each request body (frontend, batching and IPC cost only); "
        "247-byte JSON body",
    ),
    "resnet18": Workload(
        "resnet18", "photo.jpg", "application/octet-stream", (Config(1), Config(2), Config(1, 4, 20)), (1, 8), 15,
        "W2: torchvision resnet18 (seeded random weights), built-in image_classifier handler, a 500x375 JPEG. "
        "Torch threads: tsconsole gives each worker cores/workers threads, TorchServe leaves torch's default "
        "(one per core in every worker)",
    ),
}  # fmt: skip


def select(names: str) -> list[Workload]:
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    return [WORKLOADS[n] for n in wanted]
