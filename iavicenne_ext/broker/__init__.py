"""Brokers carry rooms (fan-out, presence, history, seq) for the room logic."""

from .base import BrokerUnavailable, DedupKey, History, JoinOutcome, Member, PresenceEntry, Published
from .interfaces import (
    AccessStore,
    Broker,
    DirectHistory,
    MessageBroker,
    NameRegistry,
    PresenceManager,
    RememberedRooms,
    SharedStore,
)
from .memory import MemoryBroker

__all__ = [
    "AccessStore",
    "Broker",
    "BrokerUnavailable",
    "DedupKey",
    "DirectHistory",
    "History",
    "JoinOutcome",
    "Member",
    "MemoryBroker",
    "MessageBroker",
    "NameRegistry",
    "PresenceEntry",
    "PresenceManager",
    "Published",
    "RememberedRooms",
    "SharedStore",
]
