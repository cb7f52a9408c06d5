"""Fetching a model archive named by a URL at registration, without the holes TorchServe had.

* ``allowed_urls`` (spec §13.4) is checked before a byte is fetched, and again for every redirect
  (CVE-2024-35198: TorchServe checked only the first URL); at most `MAX_REDIRECTS` are followed.
* Link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200) are
  refused where the connection is made, after name resolution, so a name that resolves there (or a
  redirect that leads there) is refused too (the SSRF of ShellTorch, CVE-2023-43654), unless an
  ``allowed_urls`` pattern names that host itself.
* The download is capped in size (``max_download_size``, default 20 GiB) and time (``download_timeout``
  seconds, default 1800), written by a thread (never on the event loop), and lands atomically: on any
  failure nothing is left in the model store.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import shutil
import socket
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from server.errors import DownloadArchiveError, ModelNotFound

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 20 * 1024**3
DEFAULT_TIMEOUT_S = 1800.0
CHUNK = 1024 * 1024
METADATA_HOSTS = frozenset({"169.254.169.254", "fd00:ec2::254", "100.100.100.200", "metadata.google.internal"})


class Refused(OSError):
    """A download tsconsole refuses (an address, a size, too many redirects): the reason reaches the client."""


def allowed(url: str, patterns: Sequence[str]) -> bool:
    """Does ``url`` match one of the ``allowed_urls`` patterns, whole and case-insensitively?"""
    return any(re.fullmatch(p, url, flags=re.IGNORECASE) for p in patterns)


def _named_hosts(patterns: Sequence[str]) -> set[str]:
    """Hosts an ``allowed_urls`` pattern spells out (``http://169\\.254\\.169\\.254/.*``): allowed even if special."""
    hosts = set()
    for pattern in patterns:
        literal = pattern.replace("\\.", ".")
        match = re.match(r"^[a-z]+://\[?([A-Za-z0-9.:-]+)\]?", literal, flags=re.IGNORECASE)
        if match:
            hosts.add(match.group(1).lower())
    return hosts


def is_special(address: str) -> bool:
    """Link-local or a cloud metadata address: never a place to fetch a model from by accident."""
    if address.lower() in METADATA_HOSTS:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_link_local or str(ip) in METADATA_HOSTS


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then refuses special addresses (the addresses actually connected to)."""

    def __init__(self, exempt: set[str]) -> None:
        self._inner = DefaultResolver()
        self._exempt = exempt

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[Any]:
        answers = await self._inner.resolve(host, port, family)
        if host.lower() in self._exempt:
            return answers
        for answer in answers:
            if is_special(answer["host"]) or is_special(host):
                raise Refused(f"{host} resolves to {answer['host']}, a link-local or metadata address")
        return answers

    async def close(self) -> None:
        await self._inner.close()


async def download(
    url: str,
    target: Path,
    patterns: Sequence[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Fetch ``url`` (which the caller checked against ``patterns``) into ``target``, atomically."""
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.download")
    try:
        if url.lower().startswith(("file://", "fil://")):
            await asyncio.to_thread(shutil.copyfile, Path(urlsplit(url).path), partial)
        else:
            async with asyncio.timeout(timeout_s):
                await _fetch(url, partial, patterns, max_bytes)
        partial.replace(target)
    except ModelNotFound:
        partial.unlink(missing_ok=True)
        raise
    except TimeoutError as exc:
        partial.unlink(missing_ok=True)
        raise DownloadArchiveError(f"Failed to download archive from: {url}: longer than {timeout_s:.0f} s") from exc
    except Refused as exc:
        partial.unlink(missing_ok=True)
        raise DownloadArchiveError(f"Failed to download archive from: {url}: {exc}") from exc
    except (OSError, aiohttp.ClientError) as exc:
        partial.unlink(missing_ok=True)
        log.warning("Download of %s failed: %s", url, exc)
        raise DownloadArchiveError(f"Failed to download archive from: {url}") from exc  # TorchServe's text
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _check_host(url: str, exempt: set[str]) -> None:
    host = (urlsplit(url).hostname or "").lower()
    if is_special(host) and host not in exempt:  # an address literal never reaches the resolver
        raise Refused(f"{host} is a link-local or metadata address")


async def _fetch(url: str, partial: Path, patterns: Sequence[str], max_bytes: int) -> None:
    exempt = _named_hosts(patterns)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(exempt))
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for _ in range(MAX_REDIRECTS + 1):
            _check_host(url, exempt)
            async with session.get(url, allow_redirects=False) as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    following = urljoin(url, response.headers["Location"])
                    if not allowed(following, patterns):  # every hop is checked, not only the first URL
                        raise ModelNotFound(f"Given URL {url} redirects to {following}, which matches no allowed URL")
                    url = following
                    continue
                if response.status != 200:
                    raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
                if (response.content_length or 0) > max_bytes:
                    raise Refused(f"the archive is larger than max_download_size ({max_bytes} bytes)")
                await _save(response, partial, max_bytes)
                return
        raise Refused(f"more than {MAX_REDIRECTS} redirects")


async def _save(response: aiohttp.ClientResponse, partial: Path, max_bytes: int) -> None:
    out = await asyncio.to_thread(open, partial, "wb")
    try:
        written = 0
        async for chunk in response.content.iter_chunked(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise Refused(f"the archive is larger than max_download_size ({max_bytes} bytes)")
            await asyncio.to_thread(out.write, chunk)
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(out.close)
