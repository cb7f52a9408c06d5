"""The console: a Textual app that talks to the model server only through `tsconsole.client.Client`.

Structure:

* ``SCREENS_TABLE`` lists the top-level screens, one `Mode` a line; the app's MODES and the key that
  switches to each are made from it. Adding a screen is one line there.
* The app owns the connection (``client``, ``endpoints``) and the pollers (models every 2 s, system
  figures every 1 s), each a `Poller` in a named worker: never overlapping, paused with ``p``, poked with
  ``space``. Their results are the reactives ``models`` and ``system``, which the screens watch.
* The app is the one error hub: `ServerError` messages (and poll failures) become the banner (server
  unreachable, token refused) or a toast; `ServerAnswered` messages become a toast and an immediate poll.
* ``read_only``: every mutating action is hidden (``check_action`` returns False), in the footer, the
  help screen's marks and the command palette alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.markup import escape
from textual.reactive import reactive
from textual.screen import Screen

from tsconsole.client import ApiError, Client, Endpoints, Unreachable
from tsconsole.connection import StartResult, is_auth_error, is_local, local_store_dir, start_server, with_token
from tsconsole.messages import ServerAnswered, ServerError
from tsconsole.pollers import ModelsSnapshot, Poller, RateTracker, SystemSnapshot, fetch_models, fetch_system
from tsconsole.screens.dashboard import DashboardScreen
from tsconsole.screens.help import HelpScreen
from tsconsole.screens.logs import LogsScreen
from tsconsole.screens.models import ModelsScreen
from tsconsole.screens.tryit import TryItScreen
from tsconsole.screens.wizard import ArchiveWizard, wizard_for_paste
from tsconsole.widgets.banner import Problem
from tsconsole.widgets.confirm import ConfirmModal
from tsconsole.widgets.start_server import StartServerModal

MODELS_INTERVAL = 2.0
SYSTEM_INTERVAL = 1.0


@dataclass(frozen=True)
class Mode:
    """A top-level screen: its name, the key that shows it, its footer label and tooltip.

    ``push=False``: an app mode (kept alive, switched to). ``push=True``: a screen pushed on top of the
    current one each time the key is pressed, which closes itself with ``dismiss`` (wizard, logs, try-it).
    """

    name: str
    key: str
    description: str
    screen: Callable[[], Screen[Any]]
    tooltip: str = ""
    mutating: bool = False  # hidden in --read-only mode
    push: bool = False

    @property
    def action(self) -> str:
        return f"open('{self.name}')" if self.push else f"switch_mode('{self.name}')"


SCREENS_TABLE: tuple[Mode, ...] = (
    Mode("dashboard", "d", "Dashboard", DashboardScreen, "Models, throughput, host, GPUs and workers"),
    Mode("models", "m", "Models", ModelsScreen, "Register, scale, set default version, unregister"),
    Mode("wizard", "a", "Archive", ArchiveWizard, "Build and register a model archive", mutating=True, push=True),
    Mode("logs", "l", "Logs", LogsScreen, "The server's logs, live", push=True),
    Mode("tryit", "t", "Try it", TryItScreen, "Send a file or text to a model", push=True),
)


class ActionsProvider(Provider):
    """The command palette mirrors every key binding of the app and the screen where it was opened.

    Bindings hidden by ``check_action`` (read-only mode, the screen already shown) are not offered either;
    widgets' own keys (cursor moves, text editing) are left to the widgets.
    """

    def _commands(self) -> Iterable[tuple[str, str, Callable[[], Any]]]:
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not isinstance(active.node, (App, Screen)):
                continue
            if not active.enabled or not binding.description or binding.system or binding.action in seen:
                continue
            if binding.action.startswith("command_palette"):
                continue
            seen.add(binding.action)
            help_text = escape(f"{binding.tooltip}  · key {self.app.get_key_display(binding) or key}".strip(" ·"))
            yield binding.description, help_text, partial(self.app.run_action, binding.action, active.node)

    async def discover(self) -> Hits:
        for name, help_text, command in self._commands():
            yield DiscoveryHit(name, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, command in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, text=name, help=help_text)


class ConsoleApp(App[None]):
    TITLE = "tsconsole"
    CSS_PATH = "app.tcss"
    MODES: ClassVar[dict[str, Any]] = {mode.name: mode.screen for mode in SCREENS_TABLE if not mode.push}
    DEFAULT_MODE = "dashboard"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(mode.key, mode.action, mode.description, id=f"screen.{mode.name}", tooltip=mode.tooltip)
            for mode in SCREENS_TABLE
        ),
        Binding("question_mark", "help", "Help", id="app.help", tooltip="Every key binding"),
        Binding("p", "toggle_pause", "Pause", id="app.pause", tooltip="Pause or resume refreshing"),
        Binding("space", "refresh_now", "Refresh", id="app.refresh", tooltip="Refresh now (also while paused)"),
        Binding("c", "connect", "Connect", id="app.connect", show=False,
                tooltip="Retry now, or start a local server if none answers"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Leave the console (the server keeps running)"),
    ]  # fmt: skip

    problem: reactive[Problem | None] = reactive(None, init=False)
    models: reactive[ModelsSnapshot | None] = reactive(None, init=False, always_update=True)
    system: reactive[SystemSnapshot | None] = reactive(None, init=False, always_update=True)
    paused: reactive[bool] = reactive(False, init=False)

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        read_only: bool = False,
        key_file: Path | None = None,
        offer_start: bool = True,
        cwd: Path | None = None,
    ) -> None:
        super().__init__()
        self.read_only = read_only
        self.key_file = key_file
        self.offer_start = offer_start
        self.cwd = cwd or Path.cwd()
        self.endpoints = endpoints
        self.client = Client(endpoints)
        self.selected_key: str | None = None  # the model version last chosen, shared by the screens
        self.rates = RateTracker()
        self.connected_once = False
        self._offered_start = False
        self._starting = False
        self._last_poll_error: dict[str, str] = {}
        self.pollers: dict[str, Poller[Any]] = {
            "models": Poller(
                "models",
                MODELS_INTERVAL,
                lambda: fetch_models(self.client, self.rates),
                self._models_polled,
                partial(self._poll_failed, "models"),
            ),
            "system": Poller(
                "system",
                SYSTEM_INTERVAL,
                lambda: fetch_system(self.client),
                self._system_polled,
                partial(self._poll_failed, "system"),
            ),
        }
        self._update_subtitle()

    # ---- life cycle -----------------------------------------------------------------------------

    def on_mount(self) -> None:
        for name, poller in self.pollers.items():
            self.run_worker(poller.run(), name=f"poll-{name}", group="pollers", exit_on_error=False)

    async def on_unmount(self) -> None:
        self.workers.cancel_group(self, "pollers")
        await self.client.aclose()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("switch_mode", "open") and parameters and self.read_only:
            mode = next((m for m in SCREENS_TABLE if m.name == parameters[0]), None)
            if mode is not None and mode.mutating:
                return False
        if action == "switch_mode" and parameters and parameters[0] == self.current_mode:
            return False  # no key for the screen already shown: room in the footer
        if action == "connect" and self.problem is None:
            return None
        return True

    # ---- pollers --------------------------------------------------------------------------------

    def _models_polled(self, snapshot: ModelsSnapshot) -> None:
        self.connected_once = True
        self._last_poll_error.pop("models", None)
        if self.problem is not None:
            self.problem = None
        self.models = snapshot

    def _system_polled(self, snapshot: SystemSnapshot) -> None:
        self._last_poll_error.pop("system", None)
        self.system = snapshot
        # a plain TorchServe has no system figures: no point asking every second
        self.pollers["system"].interval = SYSTEM_INTERVAL if snapshot.supported else 30.0

    def _poll_failed(self, poller: str, error: Exception) -> None:
        text = str(error)
        repeated = self._last_poll_error.get(poller) == text
        self._last_poll_error[poller] = text
        if isinstance(error, Unreachable) or is_auth_error(error):
            self._connection_problem(error)
        elif not repeated:  # say it once, not every two seconds
            self._toast(error, f"refreshing {poller}")

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused

    def watch_paused(self, paused: bool) -> None:
        for poller in self.pollers.values():
            poller.paused = paused
        self._update_subtitle()
        self.notify("Refreshing paused: press p to resume, space to refresh once." if paused else "Refreshing resumed.")

    def action_refresh_now(self) -> None:
        for poller in self.pollers.values():
            poller.poke()

    def _update_subtitle(self) -> None:
        parts = [self.endpoints.management]
        if self.read_only:
            parts.append("read-only")
        if self.paused:
            parts.append("paused")
        self.sub_title = " · ".join(parts)

    # ---- the error hub --------------------------------------------------------------------------

    @on(ServerError)
    def _server_error(self, message: ServerError) -> None:
        error = message.error
        if isinstance(error, Unreachable) or is_auth_error(error):
            self._connection_problem(error)
        self._toast(error, message.doing)

    @on(ServerAnswered)
    def _server_answered(self, message: ServerAnswered) -> None:
        self.notify(message.status, title="Server")
        self.action_refresh_now()

    def _toast(self, error: Exception, doing: str) -> None:
        title = f"Could not {doing}" if doing else "Error"
        if isinstance(error, ApiError):
            self.notify(error.message, title=f"{title} ({error.status})", severity="error", timeout=8)
        else:
            self.notify(str(error) or type(error).__name__, title=title, severity="error", timeout=8)

    def _connection_problem(self, error: Exception) -> None:
        address = self.endpoints.management
        if is_auth_error(error):
            if self._reload_token():
                return
            where = self.key_file or self.cwd / "key_file.json"
            text = (
                f"The server at {address} refused the token ({error}). "
                f"The console reads it from {where} when the server is local."
            )
            self.problem = Problem("auth", text)
            return
        if self._starting:
            text = f"Starting the model server in the background for {address}…"
        else:
            hint = "press c to start a local one" if self._can_start() else "press c to retry now"
            text = f"No server answers at {address} ({error}). Retrying every 2 s; {hint}."
        self.problem = Problem("unreachable", text)
        if self._can_start() and not self._offered_start and not self.connected_once and self.offer_start:
            self._offered_start = True
            self._offer_start()

    def _reload_token(self) -> bool:
        """Read key_file.json again (a restarted server writes new keys); True if the keys changed."""
        fresh = with_token(self.endpoints, self.key_file or self.cwd / "key_file.json")
        if fresh.token == self.endpoints.token and fresh.inference_token == self.endpoints.inference_token:
            return False
        self.use_endpoints(fresh)
        return True

    def use_endpoints(self, endpoints: Endpoints) -> None:
        """Talk to the server with new addresses or keys from now on (the next poll uses them)."""
        old = self.client
        self.endpoints = endpoints
        self.client = Client(endpoints)
        self.run_worker(old.aclose(), name="close-client", group="connection")
        self._update_subtitle()
        self.action_refresh_now()

    # ---- starting a local server ----------------------------------------------------------------

    def _can_start(self) -> bool:
        return is_local(self.endpoints.management) and not self.read_only

    def action_connect(self) -> None:
        if self._can_start() and not self._starting and self.problem is not None and self.problem.kind != "auth":
            self._offer_start()
        else:
            self.action_refresh_now()

    def _offer_start(self) -> None:
        if isinstance(self.screen, StartServerModal):
            return
        self.push_screen(StartServerModal(self.endpoints.management, self.cwd), self._start_chosen)

    def _start_chosen(self, store: Path | None) -> None:
        if store is None:
            return
        self._starting = True
        self.problem = Problem("unreachable", f"Starting the model server in the background (model store {store})…")
        self.notify(f"Starting the model server with model store {store}…", title="Server")
        self.start_server(store)

    @work(thread=True, name="start-server", group="connection", exclusive=True, exit_on_error=False)
    def start_server(self, store: Path) -> None:
        result = start_server(store, self.endpoints, cwd=self.cwd)
        self.call_from_thread(self._server_started, result)

    def _server_started(self, result: StartResult) -> None:
        self._starting = False
        if not result.ok:
            tail = "\n".join(result.output.splitlines()[-6:])
            last = tail.splitlines()[-1] if tail else "no output"
            self.notify(tail or "no output", title="Could not start the server", severity="error", timeout=15)
            self.problem = Problem("unreachable", f"The model server did not start: {last}")
            return
        self.notify(result.output.splitlines()[0] if result.output else "Model server started.", title="Server")
        self.use_endpoints(with_token(self.endpoints, self.key_file or self.cwd / "key_file.json"))

    # ---- navigation -----------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            mutating = frozenset(mode.action for mode in SCREENS_TABLE if mode.mutating)
            self.push_screen(HelpScreen(self.help_sections(), read_only=self.read_only, mutating_actions=mutating))

    def help_sections(self) -> list[tuple[str, type[Any]]]:
        """Where bindings are defined, for the help screen: the app, each mode's screen, the dialogs."""
        sections: list[tuple[str, type[Any]]] = [("Everywhere", type(self))]
        for mode in SCREENS_TABLE:
            if isinstance(mode.screen, type):
                sections.append((mode.description, mode.screen))
        sections.append(("Confirmation dialog", ConfirmModal))
        return sections

    def action_open(self, name: str) -> None:
        """Push the screen ``name`` of `SCREENS_TABLE` (unless it is the one shown already)."""
        mode = next((m for m in SCREENS_TABLE if m.name == name), None)
        if mode is None or (mode.mutating and self.read_only):
            return
        if not mode.push:
            self.switch_mode(name)
            return
        screen = self._make_wizard() if mode.screen is ArchiveWizard else mode.screen()
        if type(self.screen) is not type(screen):
            self.push_screen(screen)

    def _make_wizard(self) -> ArchiveWizard:
        """Builds in place when the server is our local background one (its store is known), else uploads."""
        return ArchiveWizard(store_dir=local_store_dir(self.endpoints.management))

    def on_paste(self, event: events.Paste) -> None:
        """Files dropped anywhere (outside the wizard, which handles its own) open the archive wizard."""
        if self.read_only or isinstance(self.screen, ArchiveWizard):
            return
        wizard = wizard_for_paste(event.text, store_dir=local_store_dir(self.endpoints.management))
        if wizard is not None:
            event.stop()
            self.push_screen(wizard)

    def show_model(self, key: str) -> None:
        """Open the models screen on one model version (from the dashboard's Enter or a click)."""
        self.selected_key = key
        self.switch_mode("models")


def run(endpoints: Endpoints, *, read_only: bool = False, offer_start: bool = True) -> int:
    ConsoleApp(endpoints, read_only=read_only, offer_start=offer_start).run()
    return 0
