"""ICE for peer links: which local addresses to offer, and the ICE servers the server hands out.

**Loopback.** aioice gathers host candidates from every interface except loopback: its
``get_host_addresses`` skips 127.0.0.1 and ::1, as RFC 8445 section 5.1.1.1 asks (a
loopback candidate is useless to a remote peer). Two kernels of one machine with no
other interface (a laptop offline, a container, CI) then cannot connect at all. Other
stacks made it an option (pion's ``SetIncludeLoopbackCandidate``, libjuice's
``JUICE_ENABLE_LOCALHOST_ADDRESS``); aiortc has none, so `host_addresses` makes it one:
inside ``with host_addresses(["127.0.0.1"])``, gathering (``setLocalDescription``) uses
exactly those addresses. The override is a context variable read by a wrapper put
around ``aioice.ice.get_host_addresses`` when the first `PeerNetwork` is created (or
``host_addresses`` first used), not when ``iavicenne`` is imported: importing a package
changes nothing in other libraries. Every other connection of the process, and every
other task, gathers as aioice always does.

**Which addresses by default.** ``$IAVICENNE_ICE_ADDRESSES`` (comma-separated IP
addresses, e.g. ``127.0.0.1``) sets them for every link of a process whose code chooses
none: `default_host_addresses` (what ``join()`` uses) and a `PeerNetwork` without
``loopback`` or ``host_addresses`` read it through `configured_addresses`. Set it where
peers must stay on one machine (the tests, a sandbox that allows loopback traffic only).

**A loopback-only link stays on loopback.** Its socket is bound to 127.0.0.1, but ICE
would still pair it with every candidate the peer signals, and send checks to the peer's
other addresses (on one machine, its other interfaces). `reachable_sdp` and
`reachable_candidate` drop those remote candidates, as the browser module's
``loopback`` option does.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import os
from collections.abc import Iterator, Sequence
from typing import Any

import aioice.ice
from aiortc import RTCIceServer

LOOPBACK = ("127.0.0.1",)
ADDRESSES_VARIABLE = "IAVICENNE_ICE_ADDRESSES"

_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("iavicenne_host_addresses", default=None)
_aioice_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _addresses.get()
    if chosen is None:
        return _aioice_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def _install() -> None:
    """Put the wrapper in place (once; what it does without an override is aioice's own)."""
    # aioice's gather_candidates looks the function up in its module at each call
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Gather host candidates from `addresses` only (None: aioice's usual interfaces).

    Wrap ``await pc.setLocalDescription(...)``: that is where aiortc gathers, in this
    task (or in tasks it starts, which inherit the context).
    """
    _install()
    token = _addresses.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _addresses.reset(token)


def configured_addresses() -> tuple[str, ...] | None:
    """The addresses ``$IAVICENNE_ICE_ADDRESSES`` lists (None when it is unset or empty)."""
    listed = [item.strip() for item in os.environ.get(ADDRESSES_VARIABLE, "").split(",") if item.strip()]
    for item in listed:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise ValueError(
                f"{ADDRESSES_VARIABLE}={os.environ[ADDRESSES_VARIABLE]!r}: {item!r} is not an IP address; "
                "list this machine's addresses separated by commas (127.0.0.1 for links on this machine only), "
                "or unset it to use every interface"
            ) from None
    return tuple(dict.fromkeys(listed)) or None


def default_host_addresses() -> tuple[str, ...]:
    """The local addresses a link of ``join()`` offers unless told: `configured_addresses`,
    else every interface aioice uses (peers on other machines) and 127.0.0.1 (another
    kernel of this machine, also when it has no network at all)."""
    configured = configured_addresses()
    if configured is not None:
        return configured
    found = _aioice_get_host_addresses(use_ipv4=True, use_ipv6=True)
    return tuple(dict.fromkeys([*found, *LOOPBACK]))


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name (an mDNS ``.local`` candidate): not loopback
        return False


def loopback_only(addresses: Sequence[str] | None) -> bool:
    """Whether a link with these local addresses (None: every interface) is confined to loopback."""
    if not addresses:
        return False
    return all(_is_loopback(a) for a in addresses)


def reachable_candidate(address: str, local: Sequence[str] | None) -> bool:
    """Whether a remote candidate at `address` may be tried by a link with `local` addresses."""
    return not loopback_only(local) or _is_loopback(address)


def reachable_sdp(sdp: str, local: Sequence[str] | None) -> str:
    """A remote description without the candidates a link with `local` addresses must not try."""
    if not loopback_only(local):
        return sdp
    lines = sdp.splitlines(keepends=True)
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
    kept = [line for line in lines if not line.startswith("a=candidate:") or _candidate_loopback(line)]
    return "".join(kept)


def _candidate_loopback(line: str) -> bool:
    fields = line.split()
    return len(fields) > 4 and _is_loopback(fields[4])


def rtc_ice_servers(servers: Sequence[dict[str, Any]]) -> list[RTCIceServer]:
    """The W3C ``RTCIceServer`` dicts of `joined` as aiortc objects (unknown keys ignored)."""
    converted = []
    for server in servers:
        urls = server.get("urls")
        if not urls:
            continue
        converted.append(RTCIceServer(urls=urls, username=server.get("username"), credential=server.get("credential")))
    return converted
