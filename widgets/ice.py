"""ICE for peer links: which local addresses to offer, and the ICE servers the server hands out.

**Loopback.** aioice gathers host candidates from every interface except loopback: its
``get_host_addresses`` skips 127.0.0.1 and ::1, as RFC 8445 section 5.1.1.1 asks (a
loopback candidate is useless to a remote peer). Two kernels of one machine with no
other interface (a laptop offline, a container, CI) then cannot connect at all. Other
stacks made it an option (pion's ``SetIncludeLoopbackCandidate``, libjuice's
``JUICE_ENABLE_LOCALHOST_ADDRESS``); aiortc has none, so `host_addresses` makes it one:
inside ``with host_addresses(["127.0.0.1"])``, gathering (``setLocalDescription``) uses
exactly those addresses. The override is a context variable read by a wrapper installed
once around ``aioice.ice.get_host_addresses``: every other connection of the process,
and every other task, gathers as aioice always does.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import aioice.ice
from aiortc import RTCIceServer

LOOPBACK = ("127.0.0.1",)

_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("iavicenne_host_addresses", default=None)
_aioice_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _addresses.get()
    if chosen is None:
        return _aioice_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def _install() -> None:
    # aioice's gather_candidates looks the function up in its module at each call
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


_install()


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather host candidates from `addresses` only (None: aioice's usual interfaces).

    Wrap ``await pc.setLocalDescription(...)``: that is where aiortc gathers, in this
    task (or in tasks it starts, which inherit the context).
    """
    token = _addresses.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _addresses.reset(token)


def rtc_ice_servers(servers: Sequence[dict[str, Any]]) -> list[RTCIceServer]:
    """The W3C ``RTCIceServer`` dicts of `joined` as aiortc objects (unknown keys ignored)."""
    converted = []
    for server in servers:
        urls = server.get("urls")
        if not urls:
            continue
        converted.append(RTCIceServer(urls=urls, username=server.get("username"), credential=server.get("credential")))
    return converted
