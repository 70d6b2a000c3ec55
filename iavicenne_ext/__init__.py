"""iAvicenne for Jupyter: the server extension (rooms, presence, history, signaling)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import IAvicenne

    return [{"module": "iavicenne_ext.app", "app": IAvicenne}]
