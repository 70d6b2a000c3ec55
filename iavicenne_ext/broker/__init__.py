"""Brokers carry rooms (fan-out, presence, history, seq) for the room logic."""

from .base import Broker, BrokerUnavailable, History, JoinOutcome, Member, PresenceEntry, Published
from .memory import MemoryBroker

__all__ = ["Broker", "BrokerUnavailable", "History", "JoinOutcome", "Member", "MemoryBroker", "PresenceEntry", "Published"]
