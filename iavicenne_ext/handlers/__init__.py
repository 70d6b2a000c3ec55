"""Tornado handlers of the extension: the room and signaling sockets, the REST API, the page.

Every one of them is authorized as `AUTH_RESOURCE` (Jupyter's authorizer is asked whether
the user may ``write`` it), the sockets in protocol_socket.py, the rest in their own files.
"""

AUTH_RESOURCE = "iavicenne"
