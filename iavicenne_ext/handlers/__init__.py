"""Tornado handlers of the extension: the room and signaling sockets, the REST API."""
