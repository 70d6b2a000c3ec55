"""The views: a room panel and a peer panel, composed from standard ipywidgets only.

No custom front-end code, so they render wherever ipywidgets do (JupyterLab, Notebook 7,
VS Code) with nothing to build. They hold no logic: `RoomSession` and `PeerSession`
(``iavicenne.room``, ``iavicenne.peer_session``) call their ``show_*`` methods, and they
call back through the handlers given to ``on_send`` / ``on_open_peer`` / ``on_rejoin``.
A widget event may arrive on any thread (ipykernel 7 runs them on a subshell thread):
the sessions hand every handler to the kernel's loop.

Every string that comes from another person (user ids, display names, messages,
presence values, notebook names, share and file names, error texts that quote them)
reaches an ``HTML`` widget's value through `text.esc` only: an ipywidgets HTML value is
markup in the receiver's JupyterLab page, where a peer's ``<img onerror=...>`` could
read ``_xsrf`` and run code in the receiver's kernels. Values set on other widgets
(``tooltip``, ``placeholder``, ``description``, a Dropdown's labels) are plain text there.

**The conversation keeps to its newest line** with CSS alone: the log scrolls in a
``column-reverse`` box, which browsers keep at its bottom as lines are added, and lines
are added a chunk at a time without redrawing the older ones, so a reader who scrolled
up stays where they are. A marker under the log ("newer messages below") shows while
the newest line is out of sight: a scroll-driven animation (CSS ``view-timeline``) hides
it whenever that line is in view; browsers without scroll-driven animations never show
it. Times are the kernel's local time, with the date when it is not today's.

**Who someone really is.** A name in a room is chosen by its holder; the identity the
server verified is not. Where a member's (or a link's, a message's) verified username
differs from the name they show, it is shown beside it (``carol`` ``@bob``), escaped like
every other string; "(you)" marks the rows of your own identity. Every name (a person's,
a room's, a file's) passes `safe_name`: bidi and invisible characters are written out
(``report[U+202E]fdp.py``). Messages are escaped text: a Markdown image or a URL in one is
shown as characters and fetches nothing.

**Closed or offline, plainly.** Members greyed, the box and the buttons disabled, and a
Rejoin button.

Every part carries a CSS class (``iav-…``) so a page, a test or a theme can find it.

One widget a module: `text` (escaping, names, badges, times), `message_log`, `composer`,
`error_area`, `member_list`, `room_panel`, `peer_panel`, `file_offer_row`.
"""

from .composer import Composer
from .error_area import ErrorArea
from .file_offer_row import FileOfferRow
from .member_list import MemberList, MemberRow
from .message_log import CHUNK_LINES, LOG_LINES, STYLE, MessageLog
from .peer_panel import PeerPanel, TransferRow
from .room_panel import RoomPanel
from .text import DOWN, STATES, named, safe_name, verified_username, when

__all__ = [
    "CHUNK_LINES",
    "DOWN",
    "LOG_LINES",
    "STATES",
    "STYLE",
    "Composer",
    "ErrorArea",
    "FileOfferRow",
    "MemberList",
    "MemberRow",
    "MessageLog",
    "PeerPanel",
    "RoomPanel",
    "TransferRow",
    "named",
    "safe_name",
    "verified_username",
    "when",
]
