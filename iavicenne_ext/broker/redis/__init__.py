"""The Redis broker: rooms shared by every Jupyter server that uses the same Redis.

``broker.py``  `RedisBroker`, the `Broker` methods, each a Redis request
``link.py``    the connection: requests and their errors, pub/sub, reconnection
``lane.py``    the publish script's calls, pipelined on a connection of their own
``pushes.py``  the pub/sub connection's messages, parsed many at a time
``feed.py``    a room's frames in seq order, once each, gaps filled from the history
``liveness.py`` heartbeats, the sweep of dead servers, this server's entries re-registered
``envelope.py`` what travels on a room's channel
``keys.py``    the names of keys and channels
``scripts.py`` the Lua scripts (``lua/``), one per state change

Faults: when Redis cannot be reached, requests raise `BrokerUnavailable` (the socket turns
that into an ``unavailable`` error frame), leaves are kept and applied later, and one
background task retries every ``retry_interval`` s. Once Redis answers, it resubscribes every
room with local members, replays what those members missed, and makes Redis's view of this
server's connections match the local one (re-registering or removing entries).
"""

from .broker import RedisBroker
from .link import redact

__all__ = ["RedisBroker", "redact"]
