"""A room's shared state: ``room.shared["threshold"] = 0.3`` in one kernel, read in every
other kernel and browser of the room.

`SharedState` is a pycrdt document (the Yjs CRDT of jupyter-collaboration) whose root map
(``protocol.SHARED_ROOT``) it presents as a dict: concurrent edits from any number of
kernels and browsers converge without a lock. It is synced with the Yjs sync protocol
over the room socket (``shared`` frames, docs/protocol.md "Shared state"):

* **Before and between connections, edits are kept.** The document lives as long as the
  session; each (re)join sends our state vector (step 1), the server answers what we lack
  (step 2) and its own state vector, and we answer what it lacks: writes made before the
  join, or while disconnected, are sent then and merge with everyone else's.
* **Live edits** are batched per loop turn (one update per burst of writes in a cell) and
  sent reliably (acknowledged, resent after a reconnect or a rate-limit notice).
* **A refused edit** (``limit-exceeded`` for IAvicenne.max_shared_bytes) would leave our copy
  ahead of the room's for good, so the copy is reset to the room's: the edit is undone here
  too, and the error is reported. Values read earlier (an Array) then belong to the old
  copy: read them again from ``room.shared``.
* **Observers run on the session's loop**, after the change, never inside pycrdt's
  transaction (a callback may write).

Lists and dicts assigned to a key become shared arrays and maps (``room.shared["q"] = []``
then ``room.shared["q"].append("why?")``); ``Text`` is shared text. A key assigned by two
people at once keeps one of the two values (Yjs picks the same one everywhere).

`link` keeps a widget's trait in step with a key, in every kernel that links it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pycrdt
from pycrdt import Array, Map, Text

import iavicenne_protocol as p
from iavicenne_protocol import SyncMessage, decode_sync

from .errors import RequestFailed

if TYPE_CHECKING:
    from .client import Room as ClientRoom

log = logging.getLogger("iavicenne")

EMPTY_UPDATE = bytes.fromhex(p.EMPTY_UPDATE_HEX)


@dataclass(frozen=True, slots=True)
class SharedChange:
    """What an observer is told: the top-level keys that changed, and whether we changed them."""

    keys: frozenset[str]
    local: bool


def _sync(step: int, payload: bytes) -> str:
    return SyncMessage(step, payload).b64()


def _parse_sync(text: Any) -> tuple[int, bytes] | None:
    """(step, payload) of a server's base64 y-sync message, read as the server reads the
    clients' (`iavicenne_protocol.decode_sync`); None when it is not one."""
    try:
        message = decode_sync(text, max_bytes=sys.maxsize)
    except p.ProtocolError:
        return None
    return message.step, message.payload


def to_shared(value: Any) -> Any:
    """A Python value as it is kept: lists and dicts become shared arrays and maps."""
    if isinstance(value, (Array, Map, Text)):
        return value
    if isinstance(value, dict):
        return Map({str(k): to_shared(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return Array([to_shared(v) for v in value])
    return value


#: levels of the document `repr(room.shared)` shows; deeper containers are shown as "…"
REPR_DEPTH = 16
#: what stands for the containers cut off by `plain`'s max_depth
CUT = "…"


def plain(root: Map, max_depth: int | None = None) -> dict[str, Any]:
    """`root` as plain Python, one container at a time from an explicit stack (no recursion).

    Shared maps and arrays become dicts and lists, text a str; a JSON value kept as it is
    (pycrdt converts it) is cut to `max_depth` too. Containers below `max_depth` levels
    (the root is level 1) become `CUT`.
    """
    out: dict[str, Any] = {}
    # (a shared container or JSON value, the dict or list its items go to, its level)
    stack: list[tuple[Any, Any, int]] = [(root, out, 1)]
    while stack:
        source, target, level = stack.pop()
        items = source.items() if isinstance(source, (Map, dict)) else enumerate(source)
        for key, value in items:
            if isinstance(value, Text):
                value = str(value)
            elif isinstance(value, (Map, Array, dict, list)):
                if max_depth is not None and level >= max_depth:
                    value = CUT
                else:
                    into: Any = {} if isinstance(value, (Map, dict)) else []
                    stack.append((value, into, level + 1))
                    value = into
            elif isinstance(value, (pycrdt.XmlFragment, pycrdt.XmlElement, pycrdt.XmlText, pycrdt.Doc)):
                value = f"<{type(value).__name__}>"  # XML and the like: not written by this API
            if isinstance(target, list):
                target.append(value)
            else:
                target[str(key)] = value
    return out


class SharedState:
    """The shared document of one room (``room.shared``); see the module docstring."""

    def __init__(self, room: str, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.room_name = room
        self.loop = loop or asyncio.get_running_loop()
        self.max_bytes: int | None = None  # the server's bound, once it told us
        self.writable = True
        self.errors: list[BaseException] = []
        self._observers: list[Callable[[SharedChange], Any]] = []
        self._room: ClientRoom | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._pending: list[bytes] = []  # local updates not yet sent (this loop turn's)
        self._applying = False  # applying the server's update: not ours to send
        self._synced = asyncio.Event()
        self._new_document()

    # -- the document ---------------------------------------------------------------------
    def _new_document(self) -> None:
        self.doc: pycrdt.Doc = pycrdt.Doc()
        self.root: Map = self.doc.get(p.SHARED_ROOT, type=Map)
        self.doc.observe(self._on_transaction)
        self.root.observe_deep(self._on_change)

    def __getitem__(self, key: str) -> Any:
        return self.root[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.root[key] = to_shared(value)

    def __delitem__(self, key: str) -> None:
        del self.root[key]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.root

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.root.keys()))

    def __len__(self) -> int:
        return len(self.root)

    def get(self, key: str, default: Any = None) -> Any:
        return self.root.get(key, default)

    def setdefault(self, key: str, default: Any) -> Any:
        """The value of `key`, set to `default` first when absent (here: another kernel may set it too)."""
        if key not in self.root:
            self[key] = default
        return self.root[key]

    def update(self, values: dict[str, Any]) -> None:
        """Set several keys in one update."""
        with self.doc.transaction():
            for key, value in values.items():
                self[key] = value

    def to_py(self, max_depth: int | None = None) -> dict[str, Any]:
        """The whole state as plain Python (arrays as lists, text as str, numbers as float).

        Converted level by level, without recursion: a document nested thousands deep
        (written before the server bounded its depth, or where max_shared_depth is high)
        is converted, where pycrdt's own `to_py` would crash the kernel. With `max_depth`,
        what lies deeper is shown as "…".
        """
        return plain(self.root, max_depth)

    def __repr__(self) -> str:
        return f"<SharedState {self.room_name!r} {plain(self.root, REPR_DEPTH)!r}>"

    def observe(self, callback: Callable[[SharedChange], Any]) -> Callable[[], None]:
        """Call `callback(change)` after every change, ours or another's; returns the unsubscriber."""
        self._observers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(callback)

        return unsubscribe

    async def synced(self, timeout: float | None = 30.0) -> SharedState:
        """Wait until the room's state has arrived once (after joining)."""
        await asyncio.wait_for(self._synced.wait(), timeout)
        return self

    @property
    def is_synced(self) -> bool:
        return self._synced.is_set()

    # -- local changes: sent, batched per loop turn ---------------------------------------
    def _on_transaction(self, event: Any) -> None:
        if self._applying:
            return
        update = event.update
        if update == EMPTY_UPDATE:
            return
        if not self._pending:
            self.loop.call_soon_threadsafe(self._flush)
        self._pending.append(update)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending or self._room is None:
            return  # not joined yet: the sync on join sends it (what the server lacks)
        update = pending[0] if len(pending) == 1 else pycrdt.merge_updates(*pending)
        self._send(p.SyncStep.UPDATE, update)

    def _send(self, step: int, payload: bytes) -> None:
        room = self._room
        if room is None or room.left:
            return
        frame = {"type": p.SHARED, "room": room.name, "payload": {"sync": _sync(step, payload)}}
        client = room.client
        if step == p.SyncStep.STEP1:
            # answered by a shared frame, not an ack: not for the outbox. Lost with the
            # socket, it is sent again on the rejoin of the next one
            if client.connected:
                client._write(client._ws, json.dumps(frame))
            return
        try:
            sent = room.client._send_reliable(frame, room.name)
        except Exception as error:  # the client is closed: the next join syncs
            log.debug("iavicenne: shared update not sent: %s", error)
            return
        sent.add_done_callback(self._sent)

    def _sent(self, future: asyncio.Future[dict[str, Any]]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            return
        self._refused(error)

    def _refused(self, error: BaseException) -> None:
        if not isinstance(error, RequestFailed):  # closed or left: the next join syncs
            log.debug("iavicenne: %s: shared update not acknowledged: %s", self.room_name, error)
            return
        self.errors.append(error)
        log.warning("iavicenne: %s: shared update refused: %s", self.room_name, error)
        if error.code in (p.ErrorCode.LIMIT_EXCEEDED, p.ErrorCode.INVALID_FIELD):
            self.reset()

    def reset(self) -> None:
        """Drop our copy and take the room's again (after a refused edit)."""
        keys = frozenset(self.root.keys())
        self._pending = []
        self._new_document()
        self._synced.clear()
        self._notify(SharedChange(keys, local=True))
        self._send(p.SyncStep.STEP1, self.doc.get_state())

    # -- changes, told to observers ---------------------------------------------------------
    def _on_change(self, events: list[Any]) -> None:
        keys: set[str] = set()
        for event in events:
            path = list(getattr(event, "path", []) or [])
            if path:
                keys.add(str(path[0]))
            else:
                keys.update(str(k) for k in (getattr(event, "keys", None) or {}))
        self._notify(SharedChange(frozenset(keys), local=not self._applying))

    def _notify(self, change: SharedChange) -> None:
        for callback in list(self._observers):
            self.loop.call_soon_threadsafe(self._call, callback, change)

    def _call(self, callback: Callable[[SharedChange], Any], change: SharedChange) -> None:
        try:
            callback(change)
        except Exception as error:
            self.errors.append(error)
            log.exception("iavicenne: a shared-state observer of %s failed", self.room_name)

    # -- the sync with the server -----------------------------------------------------------
    def attach(self, room: ClientRoom) -> None:
        """Sync with `room` (joined) now and after every rejoin the client makes."""
        self.detach()
        self._room = room
        self._unsubscribe = [
            room.on("shared", self._on_frame),
            room.on("presence", self._on_presence),
            # a reconnect: the client rejoined the room on the new socket before it is ready
            room.client.on("connected", self._on_connected),
        ]
        self._send(p.SyncStep.STEP1, self.doc.get_state())

    def detach(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self._room = None

    def _on_connected(self, _event: Any) -> None:
        self._send(p.SyncStep.STEP1, self.doc.get_state())

    def _on_presence(self, event: Any) -> None:
        # a snapshot: the room was (re)joined, maybe on a new socket after a reconnect
        if getattr(event, "kind", None) == "snapshot":
            self._send(p.SyncStep.STEP1, self.doc.get_state())

    def _on_frame(self, frame: dict[str, Any]) -> None:
        message = _parse_sync(frame.get("sync"))
        if message is None:
            log.warning("iavicenne: %s: a shared frame that is not a Yjs sync message was ignored", self.room_name)
            return
        step, payload = message
        if step == p.SyncStep.STEP1:
            missing = self.doc.get_update(payload)
            if missing != EMPTY_UPDATE:
                self._send(p.SyncStep.STEP2, missing)
            return
        if "max_bytes" in frame:
            self.max_bytes = frame.get("max_bytes")
            self.writable = bool(frame.get("writable", True))
        if payload != EMPTY_UPDATE:
            self._applying = True
            try:
                self.doc.apply_update(payload)
            except Exception as error:
                log.warning("iavicenne: %s: an update from the server could not be applied: %s", self.room_name, error)
            finally:
                self._applying = False
        if step == p.SyncStep.STEP2:
            self._synced.set()

    # -- linked widgets -------------------------------------------------------------------
    def link(self, widget: Any, trait: str = "value", *, key: str, call: Callable[..., None] | None = None) -> Callable[[], None]:
        """Keep `widget`'s `trait` and shared `key` in step; returns the unlinker.

        Once the room's state has arrived: a key already set moves the widget, else the
        widget's value is written. From then on each follows the other. `call(function,
        *args)` runs a widget update where widgets are updated (a kernel's main thread).
        """
        run = call or (lambda function, *args: self.loop.call_soon_threadsafe(function, *args))
        updating = False

        def to_widget(change: SharedChange) -> None:
            nonlocal updating
            if key in change.keys and key in self.root:
                value = self.root[key]
                if getattr(widget, trait) != value:
                    updating = True
                    try:
                        setattr(widget, trait, value)
                    finally:
                        updating = False

        def from_widget(change: dict[str, Any]) -> None:
            if updating:
                return
            value = change["new"]
            # a widget event may come on another thread (ipykernel 7): write on our loop
            self.loop.call_soon_threadsafe(write, value)

        def write(value: Any) -> None:
            if self.root.get(key) != value:
                self[key] = value

        def start() -> None:
            if key in self.root:
                run(to_widget, SharedChange(frozenset({key}), local=False))
            else:
                write(getattr(widget, trait))
            widget.observe(from_widget, names=trait)

        def on_change(change: SharedChange) -> None:
            run(to_widget, change)

        unobserve = self.observe(on_change)
        # from any thread: the wait runs on our loop, and so does `start` once it is over
        started = asyncio.run_coroutine_threadsafe(self._synced.wait(), self.loop)

        def synced(future: concurrent.futures.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None:
                self.loop.call_soon_threadsafe(start)

        started.add_done_callback(synced)

        def unlink() -> None:
            unobserve()
            started.cancel()
            with contextlib.suppress(ValueError):
                widget.unobserve(from_widget, names=trait)

        return unlink


def share(room: ClientRoom) -> SharedState:
    """The shared state of a `RoomClient`'s joined room (the notebook API has ``room.shared``)."""
    state = SharedState(room.name)
    state.attach(room)
    return state


__all__ = ["Array", "Map", "SharedChange", "SharedState", "Text", "share"]
