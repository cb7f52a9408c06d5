"""Token authorization (spec §13), once, for every front door: REST, gRPC and the console endpoints.

On by default, as in TorchServe 0.12. At start the server writes ``key_file.json`` in its working
directory, in TorchServe's shape (``management`` and ``inference`` keys with an ``expiration time``, and
the ``API`` key that never expires, used only to rotate the other two), created with mode 0600 and
replaced atomically; it is removed when the server stops. Requests carry ``Authorization: Bearer <key>``
(gRPC: metadata ``authorization``): the inference key on the inference listeners, the management key on
the management listeners (the console endpoints included). A missing, wrong or expired key is 400
``InvalidKeyException`` (gRPC PERMISSION_DENIED) with TorchServe's message.

Stronger than TorchServe: keys hold 192 random bits (TorchServe: 48), comparisons take constant time,
and only the exact path ``/token`` is the token API (TorchServe treats any request mentioning ``/token``
as one, so a model named ``tokenizer`` cannot be managed while authorization is on).

Off with ``--disable-token-auth``, ``disable_token_authorization=true`` or ``TS_DISABLE_TOKEN_AUTHORIZATION``
(with ``enable_envvars_config``); a server that then listens beyond the loopback interface says so loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from server.config import Address, Settings
from server.errors import ServeError

log = logging.getLogger(__name__)

KEY_FILE = "key_file.json"
KEY_BYTES = 24  # 192 bits
FAILED = "Token Authorization failed. Token either incorrect, expired, or not provided correctly"
TOKEN_API_FAILED = "Token Authentication failed. Token either incorrect, expired, or not provided correctly"
ROLES = ("management", "inference")
_BEARER = re.compile(r"^Bearer\s+(\S+)$")
_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|::1|localhost)$")


class InvalidKey(ServeError):
    status, type = 400, "InvalidKeyException"

    def __init__(self, message: str = FAILED) -> None:
        super().__init__(message)

    @property
    def grpc_code(self) -> str:
        return "PERMISSION_DENIED"


@dataclass
class Key:
    value: str
    expires: float | None  # epoch seconds; None: never

    def document(self) -> dict[str, str]:
        out = {"key": self.value}
        if self.expires is not None:
            stamp = datetime.fromtimestamp(self.expires, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out["expiration time"] = stamp
        return out


def bearer(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` value (TorchServe's exact pattern)."""
    if not authorization:
        return None
    match = _BEARER.match(authorization.strip())
    return match.group(1) if match else None


def is_loopback(address: Address) -> bool:
    return address.scheme == "unix" or bool(_LOOPBACK.match(address.host))


class TokenAuthority:
    """The keys of one server, their file, and the checks every front door asks for."""

    def __init__(self, settings: Settings, directory: Path | None = None, clock: Callable[[], float] = time.time):
        self.enabled = not settings.disable_token_authorization
        self.path = (directory or Path.cwd()) / KEY_FILE
        self.lifetime_s = 60 * settings.positive("token_expiration_min", 60.0)
        self.clock = clock
        self.keys: dict[str, Key] = {}
        self._settings = settings

    def start(self) -> None:
        """Make the keys and write the key file (or warn about exposed listeners when authorization is off)."""
        if not self.enabled:
            exposed = [a.url for a in self._addresses() if not is_loopback(a)]
            if exposed:
                log.warning(
                    "TOKEN AUTHORIZATION IS OFF and the server listens beyond this machine (%s): anyone who can "
                    "reach it can run predictions%s. Remove --disable-token-auth / disable_token_authorization "
                    "unless something in front of the server checks who calls.",
                    ", ".join(exposed),
                    " and register handler code" if self._settings.enable_model_api else "",
                )
            return
        now = self.clock()
        self.keys = {role: self._new(now) for role in ROLES} | {"API": Key(secrets.token_urlsafe(KEY_BYTES), None)}
        self._write()
        log.info("Token Authorization Enabled; keys in %s", self.path)

    def close(self) -> None:
        if self.enabled and self.keys:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _addresses(self) -> list[Address]:
        s = self._settings
        return [s.inference_address, s.management_address, s.grpc_inference_address, s.grpc_management_address]

    def _new(self, now: float) -> Key:
        return Key(secrets.token_urlsafe(KEY_BYTES), now + self.lifetime_s)

    def _write(self) -> None:
        document = {name: key.document() for name, key in self.keys.items()}
        handle, tmp = tempfile.mkstemp(prefix=".key_file-", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(handle, "w") as out:
                json.dump(document, out, indent=2)
                out.write("\n")
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _matches(self, name: str, presented: str | None) -> bool:
        key = self.keys.get(name)
        if key is None or presented is None:
            return False
        same = hmac.compare_digest(key.value.encode(), presented.encode())
        return same and (key.expires is None or self.clock() < key.expires)

    def check(self, role: str, authorization: str | None) -> None:
        """Raise `InvalidKey` unless ``authorization`` carries the valid key of ``role``."""
        if self.enabled and not self._matches(role, bearer(authorization)):
            raise InvalidKey()

    async def rotate(self, kind: str | None, authorization: str | None) -> None:
        """The token API: a new ``kind`` key (management or inference), asked with the API key."""
        if kind not in ROLES or not self._matches("API", bearer(authorization)):
            raise InvalidKey(TOKEN_API_FAILED)
        self.keys[kind] = self._new(self.clock())
        await asyncio.to_thread(self._write)
        log.info("Token Authorization: a new %s key", kind)
