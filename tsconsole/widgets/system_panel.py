"""Host CPU and memory, the server's gRPC addresses, and every GPU, with short history charts; says plainly
what is not there."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Static

from tsconsole.client import Listeners
from tsconsole.formatting import number, percent, unit, used_of
from tsconsole.pollers import SystemSnapshot
from tsconsole.widgets.meter import Meter

NEEDS_TSCONSOLE = "System figures need a tsconsole server (this one has no /console/system)."


class GpuCard(Vertical):
    """Utilisation, memory, temperature and power of one GPU."""

    DEFAULT_CSS = """
    GpuCard {
        height: auto;
        margin-top: 1;
    }
    GpuCard > .gpu--title {
        text-style: bold;
    }
    """

    def __init__(self, gpu_id: str, index: int) -> None:
        super().__init__(id=f"gpu-{index}")
        self.gpu_id = gpu_id
        self._pending: dict | None = None
        self._ready = False

    def compose(self) -> ComposeResult:
        yield Label(f"GPU {self.gpu_id}", classes="gpu--title", markup=False)
        yield Meter("util", id="util")
        yield Meter("memory", id="memory")
        yield Meter("temp", id="temp")
        yield Meter("power", id="power")

    def on_mount(self) -> None:
        self._ready = True
        if self._pending is not None:
            self.show(self._pending)

    def show(self, gpu: dict) -> None:
        if not self._ready:  # figures that arrive before the card is composed: show the latest once it is
            self._pending = gpu
            return
        self.query_one(".gpu--title", Label).update(f"GPU {self.gpu_id}  {gpu.get('name') or ''}".rstrip())
        used, total = number(gpu.get("memoryUsed")), number(gpu.get("memoryTotal"))
        memory_pct = used / total * 100 if used is not None and total else None
        self.query_one("#util", Meter).push(number(gpu.get("utilization")), percent(gpu.get("utilization")))
        self.query_one("#memory", Meter).push(memory_pct, used_of(used, total))
        self.query_one("#temp", Meter).push(number(gpu.get("temperature")), unit(gpu.get("temperature"), "°C"))
        self.query_one("#power", Meter).push(number(gpu.get("power")), unit(gpu.get("power"), "W", 1))


class SystemPanel(Vertical):
    """Fed with `SystemSnapshot` s by the dashboard."""

    DEFAULT_CSS = """
    SystemPanel {
        height: auto;
    }
    SystemPanel > .system--note {
        color: $text-muted;
    }
    SystemPanel > #gpu-status {
        color: $warning;
    }
    SystemPanel > #grpc {
        height: auto;
        display: none;  /* until the server reports its gRPC addresses */
    }
    SystemPanel > #grpc > .system--label {
        width: 10;
        color: $text-muted;
    }
    SystemPanel > #grpc > #grpc-targets {
        width: 1fr;
    }
    """

    _cards_made = 0

    def compose(self) -> ComposeResult:
        yield Static("Waiting for the server…", id="system-note", classes="system--note", markup=False)
        yield Meter("CPU", id="host-cpu")
        yield Meter("memory", id="host-memory")
        yield Label("disk      N/A", id="host-disk", markup=False)
        with Horizontal(id="grpc"):
            yield Label("gRPC", classes="system--label", markup=False)
            yield Static("", id="grpc-targets", markup=False)
        yield Static("", id="gpu-status", markup=False)
        yield Vertical(id="gpus")

    def show(self, snapshot: SystemSnapshot) -> None:
        note = self.query_one("#system-note", Static)
        for widget in self.query("Meter#host-cpu, Meter#host-memory, #host-disk, #gpu-status, #gpus"):
            widget.display = snapshot.supported
        if not snapshot.supported:
            self._show_grpc(None)
            note.update(NEEDS_TSCONSOLE)
            note.display = True
            return
        note.display = False
        host = snapshot.host
        cpus = host.get("cpuCount")
        cpu_text = percent(host.get("cpuPercent")) + (f" of {cpus} cores" if cpus else "")
        self.query_one("#host-cpu", Meter).push(number(host.get("cpuPercent")), cpu_text)
        self.query_one("#host-memory", Meter).push(
            number(host.get("memoryPercent")),
            f"{percent(host.get('memoryPercent'))}  {used_of(host.get('memoryUsed'), host.get('memoryTotal'))}",
        )
        self.query_one("#host-disk", Label).update(f"disk      {used_of(host.get('diskUsed'), host.get('diskTotal'))}")
        self._show_grpc(snapshot.listeners)
        status = self.query_one("#gpu-status", Static)
        if snapshot.gpu_status != "ok" or not snapshot.gpus:
            status.update(
                f"GPU: {snapshot.gpu_status}" if snapshot.gpu_status != "ok" else "GPU: none on the server's host."
            )
            status.display = True
        else:
            status.display = False
        self._show_gpus(snapshot.gpus)

    def _show_grpc(self, listeners: Listeners | None) -> None:
        """The gRPC addresses, one a line with its role; nothing when the server does not report them."""
        box = self.query_one("#grpc", Horizontal)
        box.display = listeners is not None and listeners.grpc
        if listeners is None or not box.display:
            return
        roles = ((listeners.grpc_inference, "inference"), (listeners.grpc_management, "management"))
        lines = [Text.assemble(target, (f"  {role}", "dim")) for target, role in roles if target]
        self.query_one("#grpc-targets", Static).update(Text("\n").join(lines))

    def _show_gpus(self, gpus: tuple[dict, ...]) -> None:
        box = self.query_one("#gpus", Vertical)
        cards = {card.gpu_id: card for card in box.query(GpuCard)}
        wanted = [str(g.get("id", i)) for i, g in enumerate(gpus)]
        for gpu_id, card in cards.items():
            if gpu_id not in wanted:
                card.remove()
        for gpu_id, gpu in zip(wanted, gpus, strict=True):
            card = cards.get(gpu_id)
            if card is None:
                self._cards_made += 1
                card = GpuCard(gpu_id, self._cards_made)
                card.show(gpu)
                box.mount(card)
            else:
                card.show(gpu)
