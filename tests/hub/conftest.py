"""Fixtures of the hub tests: Chromium through Playwright's sync API (tests/playwright_support.py)."""

from browser_support import browser, jp_asyncio_loop, jp_server_cleanup

__all__ = ["browser", "jp_asyncio_loop", "jp_server_cleanup"]
