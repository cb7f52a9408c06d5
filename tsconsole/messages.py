"""Messages the console's screens send to the app (its one error hub). Textual-side only."""

from __future__ import annotations

from textual.message import Message


class ServerError(Message):
    """A request to the server failed; the app shows it as the banner (connection, token) or a toast."""

    def __init__(self, error: Exception, doing: str = "") -> None:
        super().__init__()
        self.error = error
        self.doing = doing  # what the user asked for, e.g. 'scale "echo" 1.0'


class ServerAnswered(Message):
    """A change went through: the server's status message, shown as a toast; the app polls at once."""

    def __init__(self, status: str) -> None:
        super().__init__()
        self.status = status
