"""The SQLite store (the default broker): the memory broker, kept in one SQLite file per
server, so a restart keeps the rooms (broker.py; journal.py: the writer; schema.py: the file)."""

from .broker import SQLiteBroker
from .schema import StoreError

__all__ = ["SQLiteBroker", "StoreError"]
