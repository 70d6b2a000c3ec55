"""Identity comes from who authenticated, never from what a client says; names are compared
by their Unicode confusables skeleton, so a look-alike of someone's name is refused.

On a plain Jupyter server (jupyter_server's own identity provider) the server's token, as
kernels use it, and a browser's login cookie are one identity: the server's owner. With a
deployment's own provider (`room_support.TwoAnalysts`: personal tokens for alice and bob)
its users keep their own, and the server's token is still the owner. A JupyterHub-like
provider (users with a ``hub_user``) gets the 'own' name policy.
"""

from __future__ import annotations

import getpass
import json
import re
import urllib.parse
from typing import Any, ClassVar

import pytest
from jupyter_server.auth.identity import PasswordIdentityProvider, User
from room_support import ALICE, BOB, Connect, with_analysts
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

import iavicenne_protocol as p
from iavicenne_ext.names import skeleton
from iavicenne_ext.testing import WSClient

CYRILLIC_O = "\u043e"
FULLWIDTH_BOB = "\uff42\uff4f\uff42"


# -- the skeleton ---------------------------------------------------------------------------


@pytest.mark.parametrize("look_alike", ["bob", "Bob", "BOB", f"b{CYRILLIC_O}b", FULLWIDTH_BOB])
def test_look_alikes_have_one_skeleton(look_alike: str) -> None:
    assert skeleton(look_alike) == skeleton("bob")


@pytest.mark.parametrize("other", ["bobby", "rob", "alice", "b-o-b"])
def test_different_names_have_different_skeletons(other: str) -> None:
    assert skeleton(other) != skeleton("bob")


# -- helpers ----------------------------------------------------------------------------------


async def login_cookie(base: str, token: str) -> str:
    """The ``Cookie`` header of a browser that logged in with the server's token (see test_auth)."""
    client = AsyncHTTPClient()
    page = await client.fetch(base + "login")
    xsrf = re.search(r"_xsrf=([^;]+)", "; ".join(page.headers.get_list("Set-Cookie"))).group(1)  # type: ignore[union-attr]
    form = urllib.parse.urlencode({"_xsrf": xsrf, "password": token})
    login = await client.fetch(
        base + "login", method="POST", body=form, headers={"Cookie": f"_xsrf={xsrf}"}, follow_redirects=False, raise_error=False
    )
    assert login.code == 302, login.body
    cookies = [c.split(";")[0] for c in login.headers.get_list("Set-Cookie") if c.startswith("username-")]
    assert cookies, login.headers
    return "; ".join([*cookies, f"_xsrf={xsrf}"])


@pytest.fixture
def base(jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str) -> str:
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}"


async def browser_socket(base: str, cookie: str, path: str = p.ROOMS_PATH) -> WSClient:
    origin = base.split("/", 3)
    request = HTTPRequest("ws" + base[4:] + path, headers={"Cookie": cookie, "Origin": f"{origin[0]}//{origin[2]}"})
    return WSClient(await websocket_connect(request))


async def identity_on_connect(client: WSClient, user_id: str | None = None) -> dict[str, Any]:
    await client.send({"type": p.CONNECT, "payload": {"user_id": user_id or "probe"}})
    return (await client.expect(p.CONNECT))["identity"]


async def error_for(client: WSClient, frame: dict[str, Any]) -> dict[str, Any]:
    await client.send({**frame, "ref": "x"})
    return await client.expect(p.ERROR, where=lambda f: f.get("ref") == "x")


# -- a plain server: one owner -----------------------------------------------------------


def plain(**iavicenne: Any) -> dict[str, Any]:
    """The config of a plain server: jupyter_server's own identity provider."""
    return {"ServerApp": {"jpserver_extensions": {"iavicenne_ext": True}}, "IAvicenne": iavicenne}


@pytest.mark.parametrize("jp_server_config", [plain()])
async def test_the_token_and_the_login_cookie_are_the_owner(connect: Connect, base: str, jp_serverapp: Any) -> None:
    owner = getpass.getuser()
    kernel = await connect()
    cookie = await login_cookie(base, jp_serverapp.identity_provider.token)
    tab = await browser_socket(base, cookie)
    other_tab = await browser_socket(base, cookie)
    expected = {"username": owner, "name": owner, "display_name": owner}
    for client in (kernel, tab, other_tab):
        await client.send({"type": p.JOIN_ROOM, "room": "r1", "payload": {}})  # no user_id: the identity's name
        joined = await client.expect(p.ROOM_JOINED)
        assert joined["user_id"] == owner
    # one member with three connections, not three users (nor a name-taken)
    assert [(m["user_id"], m["identity"], m["connections"]) for m in joined["members"]] == [(owner, expected, 3)]
    tab.close()
    other_tab.close()


@pytest.mark.parametrize("jp_server_config", [plain(owner_name="dr-house")])
async def test_owner_name_names_the_owner(connect: Connect) -> None:
    client = await connect()
    assert await identity_on_connect(client) == {"username": "dr-house", "name": "dr-house", "display_name": "dr-house"}


# -- a deployment's own provider ---------------------------------------------------------------


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    return with_analysts(jp_server_config)


async def test_custom_provider_users_keep_their_identity(connect: Connect) -> None:
    alice, owner = await connect(headers=ALICE), await connect()
    assert await identity_on_connect(alice) == {"username": "alice", "name": "alice", "display_name": "Alice"}
    # the server's own token is the owner on any provider
    assert (await identity_on_connect(owner))["username"] == getpass.getuser()


@pytest.mark.parametrize("look_alike", ["bob", "Bob", f"b{CYRILLIC_O}b", FULLWIDTH_BOB, "bob#k1"])
async def test_a_look_alike_of_another_users_name_is_refused(connect: Connect, look_alike: str) -> None:
    bob = await connect(headers=BOB)
    await bob.join("r1")  # bob has been seen by the server
    alice = await connect(headers=ALICE)
    error = await error_for(alice, {"type": p.CONNECT, "payload": {"user_id": look_alike}})
    assert error["code"] == p.ErrorCode.NAME_TAKEN
    assert "looks like 'bob'" in error["message"]
    signaling = await connect(p.SIGNALING_PATH, headers=ALICE)
    error = await error_for(signaling, {"type": p.JOIN, "room": "r1", "payload": {"peer_id": look_alike}})
    assert error["code"] == p.ErrorCode.NAME_TAKEN


async def test_a_name_held_in_a_room_is_held_with_its_look_alikes(connect: Connect) -> None:
    alice = await connect(headers=ALICE)
    await alice.join("r1", "Dr Ana")
    bob = await connect(headers=BOB)
    for look_alike in ("dr ana", "DR ANA", "Dr An\u0430"):  # the last with a Cyrillic a
        await bob.send({"type": p.CONNECT, "payload": {"user_id": look_alike}})
        await bob.expect(p.CONNECT)
        refused = await error_for(bob, {"type": p.JOIN_ROOM, "room": "r1", "payload": {}})
        assert refused["code"] == p.ErrorCode.NAME_TAKEN, look_alike
    # alice herself may use several spellings of her names
    again = await connect(headers=ALICE)
    assert (await again.join("r1", "dr ana"))["user_id"] == "dr ana"


CYRILLIC_A = "\u0430"


@pytest.mark.parametrize("display_name", ["alice", "Alice", f"{CYRILLIC_A}lice", "\uff41lice"])
async def test_a_display_name_like_another_users_name_is_refused_at_join(connect: Connect, display_name: str) -> None:
    """bob's display name (a presence state's ``display_name``, as the JupyterLab panel sets
    it) may not be alice's username or a look-alike of it: refused at join and on a
    presence change, and alice never sees bob under it."""
    alice = await connect(headers=ALICE)
    await alice.join("r1")
    bob = await connect(headers=BOB)
    refused = await error_for(bob, {"type": p.JOIN_ROOM, "room": "r1", "payload": {"state": {"display_name": display_name}}})
    assert refused["code"] == p.ErrorCode.NAME_TAKEN
    assert refused["room"] == "r1"
    assert f"display name {display_name!r} looks like 'alice', the username of another user" in refused["message"]
    assert "choose another display name" in refused["message"]
    # under his own names he joins; a change of state to hers is refused the same way
    assert (await bob.join("r1", state={"display_name": "Bob"}))["room"] == "r1"
    await bob.send({"type": p.PRESENCE, "room": "r1", "ref": "ok", "payload": {"state": {"display_name": "Robert B."}}})
    await bob.expect(p.ACK, where=lambda f: f.get("ref") == "ok")
    refused = await error_for(bob, {"type": p.PRESENCE, "room": "r1", "payload": {"state": {"display_name": display_name}}})
    assert refused["code"] == p.ErrorCode.NAME_TAKEN
    await alice.expect(p.PRESENCE, where=lambda f: f.get("state", {}).get("display_name") == "Robert B.")
    await alice.silent()
    shown = [f.get("state", {}).get("display_name") for f in alice.seen if f.get("user_id") == "bob"]
    assert display_name not in shown, shown
    # alice's own display name, and her username in any spelling, are hers
    again = await connect(headers=ALICE)
    assert (await again.join("r2", state={"display_name": f"{CYRILLIC_A}lice"}))["room"] == "r2"


# -- a JupyterHub-like provider: the 'own' policy ------------------------------------------


class HubUsers(PasswordIdentityProvider):
    """Users as jupyterhub.singleuser hands them over: a ``hub_user`` model (with groups)."""

    hub: ClassVar[dict[str, dict[str, Any]]] = {
        "alice-token": {"name": "alice", "groups": ["oncology"]},
        "bob-token": {"name": "bob", "groups": []},
    }

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        model = self.hub.get(self.get_token(handler) or "")
        if model is None:
            return await self._get_user(handler)
        handler._token_authenticated = True  # type: ignore[attr-defined]
        user = User(username="ignored-" + model["name"], display_name=model["name"].title())
        user.hub_user = model  # type: ignore[attr-defined]
        return user


HUB = plain()
HUB["ServerApp"]["identity_provider_class"] = HubUsers


@pytest.mark.parametrize("jp_server_config", [HUB])
async def test_under_the_hub_a_name_is_its_identitys_own(connect: Connect) -> None:
    alice = await connect(headers=ALICE)
    assert await identity_on_connect(alice, "alice") == {"username": "alice", "name": "alice", "display_name": "Alice"}
    for name in ("alice#3f2a1c", "Alice"):
        await alice.send({"type": p.CONNECT, "payload": {"user_id": name}})
        assert (await alice.expect(p.CONNECT))["user_id"] == name
    for foreign in ("bob", "carol", "alicia", "bob#alice"):
        error = await error_for(alice, {"type": p.CONNECT, "payload": {"user_id": foreign}})
        assert error["code"] == p.ErrorCode.NAME_NOT_YOURS
        assert "you appear as 'alice'" in error["message"]
    # bob cannot take alice's name before she comes, in a room or as a peer
    bob = await connect(headers=BOB)
    error = await error_for(bob, {"type": p.CONNECT, "payload": {"user_id": "alice"}})
    assert error["code"] == p.ErrorCode.NAME_NOT_YOURS
    peer = await connect(p.SIGNALING_PATH, headers=BOB)
    error = await error_for(peer, {"type": p.JOIN, "room": "r1", "payload": {"peer_id": "alice#k1"}})
    assert error["code"] == p.ErrorCode.NAME_NOT_YOURS
    # with no user_id at all, the Hub name is used
    await bob.send({"type": p.JOIN_ROOM, "room": "r1", "payload": {}})
    assert (await bob.expect(p.ROOM_JOINED))["user_id"] == "bob"


class HubImpostor(HubUsers):
    """The Hub's users, bob with the display name "\u0430lice" (a Cyrillic a), as an
    authenticator that takes display names from users' own profiles would say."""

    async def get_user(self, handler: web.RequestHandler) -> User | None:
        user = await super().get_user(handler)
        if user is not None and getattr(user, "hub_user", {}).get("name") == "bob":
            user.display_name = f"{CYRILLIC_A}lice"
        return user


IMPOSTOR = plain()
IMPOSTOR["ServerApp"]["identity_provider_class"] = HubImpostor


@pytest.mark.parametrize("jp_server_config", [IMPOSTOR])
async def test_under_the_hub_an_identitys_display_name_like_another_users_name_is_refused(connect: Connect) -> None:
    alice = await connect(headers=ALICE)
    await alice.join("r1")
    bob = await connect(headers=BOB)
    assert (await identity_on_connect(bob, "bob"))["display_name"] == f"{CYRILLIC_A}lice"
    refused = await error_for(bob, {"type": p.JOIN_ROOM, "room": "r1", "payload": {}})
    assert refused["code"] == p.ErrorCode.NAME_TAKEN
    assert "looks like 'alice'" in refused["message"]
    await alice.silent()
    assert [f for f in alice.seen if f.get("user_id") == "bob"] == []  # alice never saw him under it


# -- signaling carries the verified identity ---------------------------------------------------


async def test_signaling_frames_carry_the_senders_verified_identity(connect: Connect) -> None:
    alice = await connect(p.SIGNALING_PATH, headers=ALICE)
    await alice.send({"type": p.JOIN, "room": "s1", "payload": {"peer_id": "alice#k1"}})
    await alice.expect(p.JOINED)
    bob = await connect(p.SIGNALING_PATH, headers=BOB)
    await bob.send({"type": p.JOIN, "room": "s1", "payload": {"peer_id": "carol"}})  # a name bob chose
    joined = await bob.expect(p.JOINED)
    assert joined["peers"] == ["alice#k1"]
    assert joined["peer_identities"] == {"alice#k1": {"username": "alice", "name": "alice", "display_name": "Alice"}}
    arrived = await alice.expect(p.PEER_JOINED)
    assert (arrived["peer_id"], arrived["identity"]["username"]) == ("carol", "bob")

    offer = {"type": "offer", "sdp": "v=0\r\n"}
    # a source_identity (or source_peer_id) in the request is not believed
    forged = {"username": "carol", "name": "carol", "display_name": "Carol"}
    await bob.send(
        {
            "type": p.OFFER,
            "room": "s1",
            "payload": {"target_peer_id": "alice#k1", "offer": offer, "source_identity": forged, "source_peer_id": "x"},
            "source_identity": forged,
        }
    )
    got = await alice.expect(p.OFFER)
    assert got["source_peer_id"] == "carol"
    assert got["source_identity"] == {"username": "bob", "name": "bob", "display_name": "Bob"}
    await alice.send(
        {"type": p.ANSWER, "room": "s1", "payload": {"target_peer_id": "carol", "answer": {"type": "answer", "sdp": "v=0\r\n"}}}
    )
    answer = await bob.expect(p.ANSWER)
    assert answer["source_identity"]["username"] == "alice"


@pytest.mark.parametrize("jp_server_config", [plain()])
async def test_a_browser_creates_a_room_with_the_xsrf_token_as_jupyter_asks(base: str, jp_serverapp: Any) -> None:
    """A cookie session is the owner too, and changes rooms only with the XSRF token (never turned off)."""
    cookie = await login_cookie(base, jp_serverapp.identity_provider.token)
    xsrf = cookie.rpartition("_xsrf=")[2]
    origin = base.split("/", 3)
    url = base + p.REST_PATH + "rooms"
    sent = {"Cookie": cookie, "Origin": f"{origin[0]}//{origin[2]}", "Content-Type": "application/json"}
    body = '{"room": "from-the-browser"}'
    client = AsyncHTTPClient()
    refused = await client.fetch(url, method="POST", headers=sent, body=body, raise_error=False)
    assert refused.code == 403
    created = await client.fetch(url, method="POST", headers={**sent, "X-XSRFToken": xsrf}, body=body, raise_error=False)
    assert created.code == 201, created.body
    owner = getpass.getuser()
    assert json.loads(created.body) == {
        "room": "from-the-browser",
        "access": "private",
        "owner": owner,
        "group": None,
        "members": [],
        "muted": [],
        "removed": [],
    }
