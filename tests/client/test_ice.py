"""`iavicenne.ice`: which local addresses a peer link offers, which remote candidates a
loopback-only link tries, and that importing iavicenne leaves aioice as it is. (Links
that use them: tests/client/test_peer.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from iavicenne import ice

OFFER = (
    "v=0\r\n"
    "m=application 9 DTLS/SCTP 5000\r\n"
    "a=candidate:1 1 UDP 2130706431 127.0.0.1 40001 typ host\r\n"
    "a=candidate:2 1 UDP 2130706431 192.0.2.7 40002 typ host\r\n"
    "a=candidate:3 1 UDP 2130706431 ::1 40003 typ host\r\n"
    "a=candidate:4 1 UDP 2130706431 6b1c3e0a-2f.local 40004 typ host\r\n"
    "a=candidate:5 1 UDP 1694498815 203.0.113.9 40005 typ srflx raddr 0.0.0.0 rport 0\r\n"
    "a=end-of-candidates\r\n"
)


def test_the_variable_sets_the_default_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ice.ADDRESSES_VARIABLE, " 127.0.0.1, ::1,127.0.0.1 ")
    assert ice.configured_addresses() == ("127.0.0.1", "::1")
    assert ice.default_host_addresses() == ("127.0.0.1", "::1")


def test_without_the_variable_join_offers_every_interface_and_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ice, "_aioice_get_host_addresses", lambda use_ipv4, use_ipv6: ["198.51.100.4", "2001:db8::4"])
    for unset in ("", " , "):
        monkeypatch.setenv(ice.ADDRESSES_VARIABLE, unset)
        assert ice.configured_addresses() is None
        assert ice.default_host_addresses() == ("198.51.100.4", "2001:db8::4", "127.0.0.1")
    monkeypatch.delenv(ice.ADDRESSES_VARIABLE)
    assert ice.configured_addresses() is None


def test_a_wrong_address_in_the_variable_says_what_to_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ice.ADDRESSES_VARIABLE, "127.0.0.1,localhost")
    with pytest.raises(ValueError, match=r"'localhost' is not an IP address.*127\.0\.0\.1 for links on this machine only"):
        ice.default_host_addresses()


def test_a_loopback_only_link_tries_only_the_peers_loopback_candidates() -> None:
    kept = ice.reachable_sdp(OFFER, ice.LOOPBACK)
    assert [line.split()[4] for line in kept.splitlines() if line.startswith("a=candidate:")] == ["127.0.0.1", "::1"]
    assert kept.startswith("v=0\r\nm=application") and kept.endswith("a=end-of-candidates\r\n")
    assert ice.reachable_candidate("127.0.0.1", ("127.0.0.1", "::1"))
    assert not ice.reachable_candidate("192.0.2.7", ice.LOOPBACK)
    assert not ice.reachable_candidate("6b1c3e0a-2f.local", ice.LOOPBACK)


def test_a_link_with_other_addresses_tries_every_candidate() -> None:
    for local in (None, (), ("192.0.2.1",), ("192.0.2.1", "127.0.0.1")):
        assert ice.reachable_sdp(OFFER, local) == OFFER
        assert ice.reachable_candidate("192.0.2.7", local)


def test_importing_the_package_leaves_aioice_alone_until_a_network_is_created(tmp_path: Path) -> None:
    """Another library's aiortc connections gather as aioice does, unless a PeerNetwork exists."""
    script = textwrap.dedent(
        """
        import asyncio, json
        import aioice.ice

        original = aioice.ice.get_host_addresses
        import iavicenne, iavicenne.peer, iavicenne.ice, iavicenne.room
        after_import = aioice.ice.get_host_addresses is original

        async def main():
            signaling = iavicenne.SignalingClient(iavicenne.ServerInfo("http://127.0.0.1:9/", ""), "lab", "alice")
            network = iavicenne.PeerNetwork(signaling)  # constructed, never started: no server needed
            patched = aioice.ice.get_host_addresses is not original
            await network.close()
            return patched

        print(json.dumps({"untouched_after_import": after_import, "patched_by_a_network": asyncio.run(main())}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"untouched_after_import": True, "patched_by_a_network": True}


def test_the_patch_changes_nothing_without_an_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ice, "_aioice_get_host_addresses", lambda use_ipv4, use_ipv6: ["198.51.100.4", "2001:db8::4"])
    assert ice._get_host_addresses(use_ipv4=True, use_ipv6=False) == ["198.51.100.4", "2001:db8::4"]
    with ice.host_addresses(["127.0.0.1", "::1"]):
        assert ice._get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert ice._get_host_addresses(use_ipv4=True, use_ipv6=True) == ["198.51.100.4", "2001:db8::4"]
