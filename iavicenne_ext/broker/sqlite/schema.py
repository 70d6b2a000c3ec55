"""The store's file: its tables, the statements that change them, and opening it safely.

One SQLite file per server (``IAvicenne.store_path``), in WAL mode, held by this server
alone (``locking_mode=EXCLUSIVE``: a second server on the same file is refused at start,
instead of both loading it and writing diverging histories). ``synchronous=NORMAL``: a
commit is in the file (the OS's cache) when it returns, so a killed server (SIGKILL, the
OOM killer) loses nothing committed; a power cut may lose the last commits before the
next checkpoint, the price of not waiting for the disk on every commit.

A table per kind of thing kept; a later feature adds its table here and a statement its
broker hook writes (sqlite/broker.py).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

# rooms: a room's life, `epoch`, and the last seq it handed out (its messages may all be
# gone); dedup: a published message's ref, so that its resend after a restart is not
# published again; shared_updates: update number `pos` of a room's document (a first row
# above 1 is the merge of those up to it)
TABLES = """
DROP INDEX IF EXISTS messages_at;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY, epoch TEXT NOT NULL, seq INTEGER NOT NULL, emptied_at REAL
);
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL, seq INTEGER NOT NULL, frame BLOB NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup (
    identity TEXT NOT NULL, room TEXT NOT NULL, user_id TEXT NOT NULL, ref TEXT NOT NULL,
    seq INTEGER NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (identity, room, user_id, ref)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_at ON dedup (at);
CREATE TABLE IF NOT EXISTS access (room TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (skeleton TEXT PRIMARY KEY, username TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reads (
    room TEXT NOT NULL, username TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (room, username)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS remembered (
    username TEXT NOT NULL, room TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (username, room)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS direct_messages (
    room TEXT NOT NULL, seq INTEGER NOT NULL, first TEXT NOT NULL, second TEXT NOT NULL,
    frame BLOB NOT NULL, at REAL NOT NULL, PRIMARY KEY (room, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS direct_seqs (room TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shared_docs (room TEXT PRIMARY KEY, life TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shared_updates (
    room TEXT NOT NULL, pos INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (room, pos)
) WITHOUT ROWID;
"""


def _text_of(row: str) -> str:
    """SQL for the searchable text of a `messages` row (search.searchable_text's rule): the
    ``message.content`` string of a ``message`` frame not deleted, else NULL. Nested CASEs:
    a frame that is not JSON must not make a commit fail."""
    frame = f"CAST({row}.frame AS TEXT)"
    return (
        f"CASE WHEN json_valid({frame}) THEN CASE WHEN json_extract({frame}, '$.type') = 'message' "
        f"AND json_type({frame}, '$.deleted') IS NULL AND json_type({frame}, '$.message.content') = 'text' "
        f"THEN json_extract({frame}, '$.message.content') END END"
    )


# full-text search (broker/search.py): message_search is an FTS5 index of each kept
# message's text, its rowid the id of the message's row in message_search_rows (the
# messages table has no rowid). Triggers on messages keep it in step with every way a
# message is written, rewritten (edited: the new text only; deleted: no text) or cut, so
# the broker's hooks need not know about it.
SEARCH = [
    "CREATE TABLE IF NOT EXISTS message_search_rows "
    "(id INTEGER PRIMARY KEY, room TEXT NOT NULL, seq INTEGER NOT NULL, UNIQUE (room, seq))",
    "CREATE VIRTUAL TABLE IF NOT EXISTS message_search USING fts5(text, tokenize = 'unicode61 remove_diacritics 0')",
    f"""CREATE TRIGGER IF NOT EXISTS messages_search_put AFTER INSERT ON messages BEGIN
        DELETE FROM message_search WHERE rowid IN
            (SELECT id FROM message_search_rows WHERE room = new.room AND seq = new.seq);
        INSERT OR REPLACE INTO message_search_rows (room, seq) VALUES (new.room, new.seq);
        INSERT INTO message_search (rowid, text)
            SELECT id, {_text_of("new")} FROM message_search_rows WHERE room = new.room AND seq = new.seq;
    END""",
    f"""CREATE TRIGGER IF NOT EXISTS messages_search_rewrite AFTER UPDATE OF frame ON messages BEGIN
        DELETE FROM message_search WHERE rowid IN
            (SELECT id FROM message_search_rows WHERE room = new.room AND seq = new.seq);
        INSERT INTO message_search (rowid, text)
            SELECT id, {_text_of("new")} FROM message_search_rows WHERE room = new.room AND seq = new.seq;
    END""",
    """CREATE TRIGGER IF NOT EXISTS messages_search_cut AFTER DELETE ON messages BEGIN
        DELETE FROM message_search WHERE rowid IN
            (SELECT id FROM message_search_rows WHERE room = old.room AND seq = old.seq);
        DELETE FROM message_search_rows WHERE room = old.room AND seq = old.seq;
    END""",
]
# a store written before the index existed: its messages indexed once, at start
SEARCH_FILL = [
    "DELETE FROM message_search",
    "DELETE FROM message_search_rows",
    "INSERT INTO message_search_rows (room, seq) SELECT room, seq FROM messages",
    f"INSERT INTO message_search (rowid, text) SELECT message_search_rows.id, {_text_of('messages')} "
    "FROM message_search_rows JOIN messages USING (room, seq)",
    "INSERT OR REPLACE INTO meta (key, value) VALUES ('search', '1')",
]
# the newest kept messages of some rooms (a JSON list) matching an FTS5 query
SEARCH_MESSAGES = """
SELECT message_search_rows.room, messages.frame FROM message_search
JOIN message_search_rows ON message_search_rows.id = message_search.rowid
JOIN messages ON messages.room = message_search_rows.room AND messages.seq = message_search_rows.seq
WHERE message_search MATCH ? AND message_search_rows.room IN (SELECT value FROM json_each(?))
ORDER BY messages.at DESC, messages.seq DESC LIMIT ?
"""

# -- the changes the broker's hooks write (each a constant: the journal groups runs of one) --
PUT_ROOM = "INSERT OR REPLACE INTO rooms (room, epoch, seq, emptied_at) VALUES (?, ?, ?, ?)"
SET_EMPTIED = "UPDATE rooms SET emptied_at = ? WHERE room = ?"
DROP_ROOM = "DELETE FROM rooms WHERE room = ?"
DROP_MESSAGES = "DELETE FROM messages WHERE room = ?"
PUT_MESSAGE = "INSERT OR REPLACE INTO messages (room, seq, frame, at) VALUES (?, ?, ?, ?)"
REWRITE_MESSAGE = "UPDATE messages SET frame = ? WHERE room = ? AND seq = ?"
CUT_MESSAGES = "DELETE FROM messages WHERE room = ? AND seq <= ?"
CUT_SEQ = "UPDATE rooms SET seq = MAX(seq, ?) WHERE room = ?"
PUT_DEDUP = "INSERT OR REPLACE INTO dedup (identity, room, user_id, ref, seq, at) VALUES (?, ?, ?, ?, ?, ?)"
EXPIRE_DEDUP = "DELETE FROM dedup WHERE at < ?"
PUT_ACCESS = "INSERT OR REPLACE INTO access (room, record) VALUES (?, ?)"
DROP_ACCESS = "DELETE FROM access WHERE room = ?"
PUT_IDENTITY = "INSERT OR IGNORE INTO identities (skeleton, username) VALUES (?, ?)"
PUT_READ = "INSERT OR REPLACE INTO reads (room, username, seq) VALUES (?, ?, ?)"
DROP_READS = "DELETE FROM reads WHERE room = ?"
PUT_REMEMBERED = "INSERT OR REPLACE INTO remembered (username, room, at) VALUES (?, ?, ?)"
DROP_REMEMBERED = "DELETE FROM remembered WHERE username = ? AND room = ?"
PUT_DIRECT = "INSERT OR REPLACE INTO direct_messages (room, seq, first, second, frame, at) VALUES (?, ?, ?, ?, ?, ?)"
PUT_DIRECT_SEQ = "INSERT OR REPLACE INTO direct_seqs (room, seq) VALUES (?, ?)"
CUT_DIRECT = "DELETE FROM direct_messages WHERE room = ? AND first = ? AND second = ? AND seq <= ?"
DROP_CONVERSATION = "DELETE FROM direct_messages WHERE room = ? AND first = ? AND second = ?"
PUT_DOC = "INSERT OR REPLACE INTO shared_docs (room, life) VALUES (?, ?)"
PUT_UPDATE = "INSERT OR REPLACE INTO shared_updates (room, pos, data) VALUES (?, ?, ?)"
CUT_UPDATES = "DELETE FROM shared_updates WHERE room = ? AND pos <= ?"
DROP_DOC = "DELETE FROM shared_docs WHERE room = ?"
DROP_UPDATES = "DELETE FROM shared_updates WHERE room = ?"


class StoreError(Exception):
    """The store cannot be used (corrupt, locked by another server, read-only, ...): the
    server must not start on it. The message names the file and the option."""

    def __init__(self, path: str, reason: str) -> None:
        reason = " ".join(reason.split())  # one line in the log, whatever SQLite said
        super().__init__(
            f"cannot use the store {path} (IAvicenne.store_path): {reason}. Fix or move the file, or set "
            "IAvicenne.store_path to another file (IAvicenne.broker='memory' keeps rooms in memory only)"
        )
        self.path = path
        self.reason = reason


def open_store(path: str, *, busy_timeout: float = 2.0) -> sqlite3.Connection:
    """Open (creating it if needed) the store at `path`, checked and locked for this server.

    `StoreError` when the file is not a sound SQLite database, another process holds it,
    or it cannot be written: found now, at start, rather than at the first message.
    """
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(path, f"its folder cannot be made ({error.strerror or error})") from None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        # SQLite would open it read-only, then fail at the first write (WAL: "disk I/O error")
        raise StoreError(path, "read-only: the file or its folder cannot be written")
    try:
        # autocommit mode: the journal says BEGIN and COMMIT itself
        db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as error:
        raise StoreError(path, str(error)) from None
    try:
        db.execute("PRAGMA locking_mode = EXCLUSIVE")  # before WAL: no shared memory, one holder
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"WAL mode refused (journal_mode is {mode})")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA wal_autocheckpoint = 0")  # the journal checkpoints, off the event loop
        db.execute("PRAGMA foreign_keys = OFF")
        check = db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise sqlite3.DatabaseError("damaged: " + str(check[0][0]).splitlines()[-1])
        # a write now: a read-only file or folder, or another holder, is found at start
        db.execute("BEGIN IMMEDIATE")
        for statement in TABLES.split(";"):
            if statement.strip():
                db.execute(statement)
        for statement in SEARCH:
            db.execute(statement)
        if db.execute("SELECT 1 FROM meta WHERE key = 'search'").fetchone() is None:
            for statement in SEARCH_FILL:
                db.execute(statement)
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        db.execute("COMMIT")
    except sqlite3.Error as error:
        db.close()
        raise StoreError(path, _reason(error)) from None
    return db


def _reason(error: sqlite3.Error) -> str:
    text = str(error)
    if "locked" in text or "busy" in text:
        return f"{text} (another Jupyter server, or another program, has it open)"
    if "not a database" in text or "malformed" in text or "damaged" in text:
        return f"{text} (the file is damaged)"
    if "readonly" in text or "read-only" in text:
        return f"{text} (read-only: the file or its folder cannot be written)"
    return text
