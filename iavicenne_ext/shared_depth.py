"""How deep a Yjs update nests, read from its bytes before Yjs (pycrdt) sees it.

A document of 17,000 maps, one in the other, is a 250 KB update: pycrdt keeps and relays
it, but every reader that converts it recursively dies (a browser's `toJSON` throws
RangeError, pycrdt's `to_py` in a kernel is a SIGSEGV). Worse, 50,000 arrays nested in one
value (a 100 KB update) crash pycrdt's own decoder, so the server process itself would die
on `apply_update`. The depth is therefore measured here, in Python, with explicit stacks
(no recursion) and in time and memory linear in the update, and `max_shared_depth` refuses
the update before anything else reads it.

Depth counts every level a reader walks: a root type is 1, a type or a JSON array or object
inside it one more. An update may add to a type it does not contain (one already in the
document): `check_depth` bounds the update alone (that type taken as a root), which is what
keeps pycrdt safe; `DocumentDepth` keeps the depth of every item of a room's document as
updates are applied, so that the document stays within the bound too when it is built one
level per update. Either costs what the update holds, never the document.

The format is Yjs's update encoding v1 (yjs/src/utils/updates.js, encoding.js and lib0's
`readAny`), the one the y-sync messages carry.
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import iavicenne_protocol as p

# lib0 `writeAny` type tags (lib0/encoding.js)
_ANY_UNDEFINED, _ANY_NULL, _ANY_INT, _ANY_F32, _ANY_F64, _ANY_BIGINT = 127, 126, 125, 124, 123, 122
_ANY_FALSE, _ANY_TRUE, _ANY_STRING, _ANY_OBJECT, _ANY_ARRAY, _ANY_BYTES = 121, 120, 119, 118, 117, 116
_ANY_FIXED = {_ANY_UNDEFINED: 0, _ANY_NULL: 0, _ANY_FALSE: 0, _ANY_TRUE: 0, _ANY_F32: 4, _ANY_F64: 8, _ANY_BIGINT: 8}

# struct info byte (yjs/src/structs/Item.js): the content kind, and which fields follow
_CONTENT_MASK, _HAS_ORIGIN, _HAS_RIGHT_ORIGIN, _HAS_PARENT_SUB = 0x1F, 0x80, 0x40, 0x20
_GC, _DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY, _DOC, _SKIP = range(11)
_XML_ELEMENT, _XML_HOOK = 3, 5  # type refs followed by a name
#: the highest max_shared_depth may be set: pycrdt decodes a JSON value recursively, and
#: about 25,000 arrays one in the other overflow the server's stack (the process dies, for
#: every room); 20,000 also leaves room for pycrdt's conversions (nested maps: 17,000 crash
#: `to_py`, which the clients avoid, see iavicenne.shared.plain)
DEPTH_CEILING = 20_000
_JSON_BRACKET = re.compile(r"[\[\]{}]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class _TooDeep(Exception):
    """A JSON value deeper than the limit: read no further (the rest costs time for nothing)."""


class _Reader:
    __slots__ = ("data", "limit", "pos")

    def __init__(self, data: bytes, limit: int) -> None:
        self.data = data
        self.pos = 0
        self.limit = limit  # a JSON value nesting deeper raises _TooDeep

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("unexpected end of update")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uint(self) -> int:
        # the hottest code here: bytes read in place, not through `byte`
        data, pos = self.data, self.pos
        value = shift = 0
        try:
            while True:
                byte = data[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                if byte < 0x80:
                    self.pos = pos
                    return value
                shift += 7
                if shift > 70:
                    raise ValueError("varuint too long")
        except IndexError:
            raise ValueError("unexpected end of update") from None

    def skip_int(self) -> None:
        while self.byte() & 0x80:
            pass

    def raw(self, length: int) -> bytes:
        end = self.pos + length
        if end > len(self.data):
            raise ValueError("unexpected end of update")
        value = self.data[self.pos : end]
        self.pos = end
        return value

    def string(self) -> bytes:
        return self.raw(self.uint())

    def skip_string(self) -> None:
        end = self.uint() + self.pos
        if end > len(self.data):
            raise ValueError("unexpected end of update")
        self.pos = end

    def any_height(self) -> int:
        """Skip one lib0 Any value: its nesting (0 for a scalar, 1 for [] or [1], ...)."""
        height = 0
        # (values left, whether they are an object's, each preceded by its key)
        stack: list[list[int]] = [[1, 0]]
        while stack:
            top = stack[-1]
            if top[0] == 0:
                stack.pop()
                continue
            top[0] -= 1
            if top[1]:
                self.skip_string()
            tag = self.byte()
            if tag in _ANY_FIXED:
                self.raw(_ANY_FIXED[tag])
            elif tag == _ANY_INT:
                self.skip_int()
            elif tag in (_ANY_STRING, _ANY_BYTES):
                self.skip_string()
            elif tag in (_ANY_ARRAY, _ANY_OBJECT):
                count = self.uint()
                height = max(height, len(stack))  # this container's level (the first is 1)
                if height > self.limit:
                    raise _TooDeep
                if count:
                    stack.append([count, tag == _ANY_OBJECT])
            else:
                raise ValueError(f"unknown value type {tag}")
        return height


def _json_height(text: bytes) -> int:
    """The nesting of a JSON text (its strings taken out first), without parsing it."""
    height = level = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text.decode("utf-8", "replace"))):
        level += 1 if bracket in "[{" else -1
        height = max(height, level)
    return height


def _utf16_length(text: bytes) -> int:
    decoded = text.decode("utf-8", "replace")
    return len(decoded) + sum(1 for char in decoded if ord(char) > 0xFFFF)


@dataclass(slots=True)
class _Item:
    client: int
    clock: int
    length: int
    origin: tuple[int, int] | None  # the left neighbour's id, else the right one's: same parent
    parent: tuple[int, int] | None  # the type's id, when written (not copied from the origin)
    rooted: bool  # the parent is a root type
    height: int  # what the content adds: 1 for a type, a JSON value's nesting, else 0
    is_type: bool
    gc: bool = False  # a collected range (no parent any more): whatever hangs off it is dead


def _read_items(update: bytes, limit: int) -> list[_Item]:
    reader = _Reader(update, limit)
    items: list[_Item] = []
    for _ in range(reader.uint()):
        count, client, clock = reader.uint(), reader.uint(), reader.uint()
        for _ in range(count):
            info = reader.byte()
            kind = info & _CONTENT_MASK
            if kind in (_GC, _SKIP):
                length = reader.uint()
                if kind == _GC:
                    items.append(_Item(client, clock, length, None, None, False, 0, False, True))
                clock += length
                continue
            origin = (reader.uint(), reader.uint()) if info & _HAS_ORIGIN else None
            right = (reader.uint(), reader.uint()) if info & _HAS_RIGHT_ORIGIN else None
            parent, rooted = None, False
            if not info & (_HAS_ORIGIN | _HAS_RIGHT_ORIGIN):
                if reader.uint() == 1:
                    reader.skip_string()  # the root type's name
                    rooted = True
                else:
                    parent = (reader.uint(), reader.uint())
                if info & _HAS_PARENT_SUB:
                    reader.skip_string()
            length, height = _read_content(reader, kind)
            items.append(_Item(client, clock, length, origin or right, parent, rooted, height, kind == _TYPE))
            clock += length
    return items


def _read_content(reader: _Reader, kind: int) -> tuple[int, int]:
    """Skip one item's content: its length in clock ticks and the nesting it adds."""
    if kind == _DELETED:
        return reader.uint(), 0
    if kind == _JSON:
        count = reader.uint()
        return count, max((_json_height(reader.string()) for _ in range(count)), default=0)
    if kind == _BINARY:
        reader.skip_string()
        return 1, 0
    if kind == _STRING:
        return _utf16_length(reader.string()), 0
    if kind == _EMBED:
        return 1, _json_height(reader.string())
    if kind == _FORMAT:
        reader.skip_string()
        return 1, _json_height(reader.string())
    if kind == _TYPE:
        if reader.uint() in (_XML_ELEMENT, _XML_HOOK):
            reader.skip_string()
        return 1, 1
    if kind == _ANY:
        count = reader.uint()
        return count, max((reader.any_height() for _ in range(count)), default=0)
    if kind == _DOC:
        reader.skip_string()
        return 1, reader.any_height()
    raise ValueError(f"unknown content type {kind}")


class _Dangling(Exception):
    """An item whose parent is in neither the update nor the document (Yjs would keep it
    pending): its depth cannot be known until what it hangs off arrives."""


#: what `_resolve` asks about an id outside the update: the parent depth of the item holding
#: it (0: a dead one, collected or under a collected parent), or None when it is unknown
Outside = Callable[[tuple[int, int]], "int | None"]


def _resolve(items: list[_Item], outside: Outside | None) -> tuple[int, list[int]]:
    """Each item's parent depth (0: dead) and the deepest level the items reach.

    An item names its parent type, or has a neighbour (its origin) whose parent it shares;
    the parent's depth is found by following these links with a stack, each item once.
    An id outside the update is asked of `outside` (the document's depths); without one, or
    when it does not know the id, a parent outside the update counts as a root (depth 1) —
    unless `outside` is given, when an unknown one raises _Dangling.
    """
    starts: dict[int, list[int]] = {}  # client -> its items' first clocks, in order
    index: dict[int, list[int]] = {}  # client -> the items' positions in `items`
    for position, item in enumerate(items):
        starts.setdefault(item.client, []).append(item.clock)
        index.setdefault(item.client, []).append(position)
    types = {(item.client, item.clock): position for position, item in enumerate(items) if item.is_type}

    def containing(item_id: tuple[int, int]) -> int | None:
        client, clock = item_id
        clocks = starts.get(client)
        if not clocks:
            return None
        at = bisect_right(clocks, clock) - 1
        if at < 0:
            return None
        position = index[client][at]
        return position if clock < items[position].clock + items[position].length else None

    def beyond(item_id: tuple[int, int], step: int) -> int:
        """The parent depth an item gets from `item_id`, outside the update."""
        if outside is None:
            return 1
        found = outside(item_id)
        if found is None:
            raise _Dangling
        return found + step if found > 0 else 0

    # depth of each item's parent type; -1: not known yet, -2: being found (a loop)
    parent_depth = [-1] * len(items)
    deepest = 0
    for start in range(len(items)):
        stack = [start]
        while stack:
            position = stack[-1]
            if parent_depth[position] >= 0:
                stack.pop()
                continue
            item = items[position]
            step = 1 if item.parent is not None else 0  # a named parent is the type item itself
            # the item this one's parent depth comes from (None: a root, or outside the update)
            if item.gc:
                parent_depth[position] = 0
                stack.pop()
                continue
            if item.rooted:
                source, known = None, 1
            elif item.parent is not None:
                source = types.get(item.parent)  # a type item: its parent's depth + 1
                known = beyond(item.parent, 1) if source is None and containing(item.parent) is None else 1
            elif item.origin is not None:
                source = containing(item.origin)
                known = beyond(item.origin, 0) if source is None else 1
            else:
                source, known = None, 1  # no parent at all: Yjs cannot place it
            if source is None:
                parent_depth[position] = known
            elif parent_depth[source] >= 0:
                found = parent_depth[source]
                parent_depth[position] = found + step if found > 0 else 0
            elif parent_depth[source] == -2:
                raise ValueError("items whose parents form a loop")
            else:
                parent_depth[position] = -2  # on the stack: met again before it is found, a loop
                stack.append(source)
                continue
            stack.pop()
        if parent_depth[start] > 0:
            deepest = max(deepest, parent_depth[start] + items[start].height)
    return deepest, parent_depth


def update_depth(update: bytes, limit: int = DEPTH_CEILING) -> int:
    """The deepest level `update` reaches, or ValueError when it is not a Yjs update (v1).
    A JSON value nested deeper than `limit` stops the reading: then `limit` + 1 is returned.
    A parent outside the update counts as a root (depth 1): the update is bounded, not what
    it is added to (that is `DocumentDepth`'s).
    """
    try:
        return _resolve(_read_items(update, limit), None)[0]
    except _TooDeep:
        return limit + 1


def _too_deep(max_depth: int, depth: int, what: str) -> p.ProtocolError:
    return p.limit_exceeded(
        "max_shared_depth",
        max_depth,
        f"shared update refused: {what} deeper than {max_depth} levels ({depth} or more); "
        "keep values flatter (the update was not applied; your copy is reset to the room's)",
    )


def _not_an_update(error: Exception) -> p.ProtocolError:
    return p.ProtocolError(p.ErrorCode.INVALID_FIELD, f"shared update refused: not a Yjs update ({error}); nothing was changed")


@dataclass(slots=True)
class CheckedUpdate:
    """An update whose own depth is within the bound: its items, for `DocumentDepth.check`."""

    items: list[_Item]
    depth: int


def check_depth(update: bytes, max_depth: int) -> CheckedUpdate:
    """The update read (`limit-exceeded`, max_shared_depth, when it alone nests deeper than
    `max_depth`; `invalid-field` when it is not a Yjs update). Nothing was changed either way.
    This is what keeps pycrdt from crashing; the document's depth is `DocumentDepth.check`'s."""
    try:
        items = _read_items(update, max_depth)
        depth = _resolve(items, None)[0]
    except _TooDeep:
        raise _too_deep(max_depth, max_depth + 1, "it nests") from None
    except ValueError as error:
        raise _not_an_update(error) from None
    if depth > max_depth:
        raise _too_deep(max_depth, depth, "it nests")
    return CheckedUpdate(items, depth)


class DocumentDepth:
    """How deep each item of a room's document sits, kept as updates are applied, so that the
    depth an update reaches *in the document* costs what the update holds.

    Without it each update is bounded alone, and a map set inside the previous update's
    innermost map builds a document 17,000 deep, update after update. An item's parent
    depth (its parent type's level; 0 for a dead one) is kept per range of a client's
    clocks, consecutive items of one depth as one range: a document of 76,000 map entries in
    one map is a range per writer.
    """

    __slots__ = ("_ranges",)

    def __init__(self) -> None:
        # client -> (first clocks, ends, parent depths), ordered by first clock
        self._ranges: dict[int, tuple[list[int], list[int], list[int]]] = {}

    @classmethod
    def of(cls, update: bytes) -> DocumentDepth:
        """The depths of a whole document (as `Doc.get_update()` encodes it). An item whose
        parent is missing (Yjs keeps it pending) counts as under a root."""
        depths = cls()
        depths.add_update(update)
        return depths

    def parent_depth(self, item_id: tuple[int, int]) -> int | None:
        """The parent depth of the item holding `item_id` (0: dead), None when unknown."""
        kept = self._ranges.get(item_id[0])
        if kept is None:
            return None
        starts, ends, depths = kept
        at = bisect_right(starts, item_id[1]) - 1
        return depths[at] if at >= 0 and item_id[1] < ends[at] else None

    def check(self, checked: CheckedUpdate, max_depth: int) -> list[int]:
        """The parent depths of `checked`'s items in this document, or `limit-exceeded`
        (max_shared_depth) when the update would make it deeper than `max_depth`;
        `invalid-field` when an item hangs off one the document does not have."""
        try:
            depth, parent_depths = _resolve(checked.items, self.parent_depth)
        except _Dangling:
            raise p.ProtocolError(
                p.ErrorCode.INVALID_FIELD,
                "shared update refused: it builds on changes the room's document does not have; "
                "nothing was changed (your copy is reset to the room's)",
            ) from None
        if depth > max_depth:
            raise _too_deep(max_depth, depth, "it would make the document nest")
        return parent_depths

    def add(self, items: list[_Item], parent_depths: list[int]) -> None:
        """Keep the depths of `items` (now in the document); ranges already known stay."""
        for item, depth in zip(items, parent_depths, strict=True):
            starts, ends, depths = self._ranges.setdefault(item.client, ([], [], []))
            first, end = item.clock, item.clock + item.length
            at = bisect_right(starts, first)
            if at > 0 and ends[at - 1] > first:
                first = ends[at - 1]  # known already (an update may repeat what the document has)
            if at < len(starts) and starts[at] < end:
                end = starts[at]
            if first >= end:
                continue
            if at > 0 and ends[at - 1] == first and depths[at - 1] == depth:
                ends[at - 1] = end  # the next items of the last range: one range
            else:
                starts.insert(at, first)
                ends.insert(at, end)
                depths.insert(at, depth)

    def add_update(self, update: bytes) -> None:
        """Keep the depths of an update applied without `check` (another server's, from the log)."""
        items = _read_items(update, sys.maxsize)  # kept already: measured, never refused

        def known_or_root(item_id: tuple[int, int]) -> int:
            found = self.parent_depth(item_id)
            return 1 if found is None else found

        self.add(items, _resolve(items, known_or_root)[1])
