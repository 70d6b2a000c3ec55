"""The browser side: the demo page (`{base_url}iavicenne/`) and the browser client's ES
modules (`{base_url}iavicenne/static/...`), both behind Jupyter's authentication.

The page is a Jupyter page: a visitor who is not logged in is redirected to the login
page and comes back after it (``?token=...`` in the address logs in too, as for `/lab`).
The static files are the client's modules (`iavicenne.js`, the entry, and the modules it
imports, `protocol.js` among them; `*.d.ts` their types) and the demo's own script and
style. They hold nothing secret, but they are the extension's endpoints like any other,
so they need the same login; an unauthenticated request gets 403 rather than a redirect,
because a ``<script>`` or an ``import`` cannot follow a login page.

The page shows what other people send (names, messages, presence states); it inserts
them as text, and its Content-Security-Policy runs no script but its own modules (and its
import map, by a nonce), so a string that slipped through as markup still could not run.

Behind JupyterHub (>= 4.1) a cookie-authenticated request that is not a page navigation
must carry the XSRF token, and browsers fetch module scripts as such requests (``cors``
mode). So the page names its entry module with ``?_xsrf=<token>`` and maps, in an import
map, every module of the client to its URL with that same query: the modules' own
``import``s then carry it too. Nothing turns the Hub's check off, and the static files
stay behind the login. On a plain Jupyter server the query is ignored.

In a user's server under JupyterHub the rooms are in the room service (`iavicenne_ext.hub`):
there the page redirects the browser to the service's page.
"""

from __future__ import annotations

import html
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from ..hub import RoomServiceLocator, RoomServiceUnavailable
from . import AUTH_RESOURCE

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


# The demo page's own policy: scripts from this server only (its modules: no inline
# script but the import map, which carries the page's nonce; no handler attribute, no
# eval), nothing to embed, no <base> to move relative URLs elsewhere; connections (fetch,
# WebSocket) and styles from this server too.
DEMO_PAGE_POLICY = (
    "default-src 'self'",
    "script-src 'self' 'nonce-{nonce}'",
    "style-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
)


def module_urls(static_url: str, xsrf: str) -> tuple[str, dict[str, str]]:
    """The entry module's URL and the import map that sends every module of STATIC_DIR
    the XSRF token (`static_url` is the path of the static folder, ending in '/'), those in
    its subfolders too (static/vendor/: yjs and lib0, which the shared state imports)."""
    query = "?_xsrf=" + quote(xsrf, safe="")
    modules = sorted(path.relative_to(STATIC_DIR).as_posix() for path in STATIC_DIR.rglob("*") if path.suffix in (".js", ".mjs"))
    imports = {f"{static_url}{module}": f"{static_url}{module}{query}" for module in modules}
    return f"{static_url}demo.js{query}", imports


class DemoPageHandler(JupyterHandler):
    """`GET {base_url}iavicenne/`: the demo page, with this server's base URL filled in;
    under JupyterHub, in a user's server, a redirect to the room service's page."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, *, locator: RoomServiceLocator | None = None) -> None:
        self.locator = locator  # None: the rooms are in this server

    @property
    def script_nonce(self) -> str:
        """This response's nonce for the inline import map (made once per request)."""
        nonce: str | None = getattr(self, "_script_nonce", None)
        if nonce is None:
            nonce = self._script_nonce = secrets.token_urlsafe(18)
        return nonce

    @property
    def content_security_policy(self) -> str:
        """The demo page's policy, then Jupyter's (``frame-ancestors``, ``report-uri``, or
        the deployment's own ``Content-Security-Policy`` from ``tornado_settings``).

        Where both name a directive, a browser obeys the first: so on this page, ours;
        everything else the deployment sets still holds (Jupyter's ``set_default_headers``
        sends this as the header)."""
        own = (directive.format(nonce=self.script_nonce) for directive in DEMO_PAGE_POLICY)
        return "; ".join((*own, super().content_security_policy))

    @web.authenticated
    @web.addslash  # relative links (static/demo.css) resolve under {base_url}iavicenne/
    async def get(self) -> None:
        if self.locator is not None:
            try:
                page_url = (await self.locator.locate()).page_url
            except RoomServiceUnavailable as error:
                self.log.warning("iavicenne: no room service: %s", error)
                raise web.HTTPError(503, str(error)) from None
            query = self.request.query  # ?room=...&name=... fills the form there too
            self.redirect(page_url + (f"?{query}" if query else ""))
            return
        page = (STATIC_DIR / "demo.html").read_text(encoding="utf-8")
        # also sets the `_xsrf` cookie, which the module sends back as X-XSRFToken on REST
        # calls (Jupyter refuses a browser's POST, PUT, DELETE without it)
        xsrf = self.xsrf_token
        entry, imports = module_urls(f"{self.base_url}iavicenne/static/", xsrf.decode() if isinstance(xsrf, bytes) else xsrf)
        # in a <script>, "</" could end the element: JSON lets it be written "<\/"
        import_map = json.dumps({"imports": imports}).replace("</", "<\\/")
        fill = {
            "{{base_url}}": html.escape(self.base_url, quote=True),
            "{{nonce}}": self.script_nonce,
            "{{import_map}}": import_map,
            "{{entry}}": html.escape(entry, quote=True),
        }
        for placeholder, value in fill.items():
            page = page.replace(placeholder, value)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.finish(page)


class StaticHandler(JupyterHandler, web.StaticFileHandler):
    """`GET {base_url}iavicenne/static/<file>`: the module and the demo's files, for logged-in users."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, path: str = str(STATIC_DIR), default_filename: str | None = None) -> None:  # type: ignore[override]
        web.StaticFileHandler.initialize(self, path, default_filename)

    def get_login_url(self) -> str:
        # what @web.authenticated calls to redirect: refuse instead (see the module docstring)
        raise web.HTTPError(403, "log in to Jupyter first, or add ?token=... to the URL")

    def set_extra_headers(self, path: str) -> None:
        # revalidate every time (a 304 when unchanged): a page must never run a stale
        # module against a newer server
        self.set_header("Cache-Control", "no-cache")

    def get_content_type(self) -> str:
        if self.absolute_path is not None and self.absolute_path.endswith((".js", ".mjs")):
            return "text/javascript; charset=UTF-8"  # module scripts need a JavaScript type
        if self.absolute_path is not None and self.absolute_path.endswith(".d.ts"):
            return "text/plain; charset=UTF-8"
        return super().get_content_type()

    # @web.authenticated marks the methods for Jupyter's check that every endpoint is
    # authenticated (tests/server/test_auth.py); its untyped wrapper is what mypy sees as the override
    @web.authenticated
    def get(self, path: str, include_body: bool = True) -> Any:  # type: ignore[override]
        return super().get(path, include_body)

    @web.authenticated
    def head(self, path: str) -> Any:  # type: ignore[override]
        return super().head(path)
