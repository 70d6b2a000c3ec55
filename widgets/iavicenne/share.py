"""What travels over a peer link when a notebook shares data: DataFrames and files.

A shared object is one binary message on the link (a `PeerLink` carries it in pieces
when it is large)::

    b"\x00IAVSHARE1\x00"  |  header length: u32, big-endian  |  header: JSON, UTF-8  |  payload

with the header ``{"kind": "dataframe" | "file", "name": str, "size": <payload bytes>,
...}`` (a DataFrame adds ``format``: ``"arrow"`` or ``"parquet"``, ``rows``, ``columns``).
Any peer that writes this (a browser with apache-arrow, say) can share with a kernel.

DataFrames travel as Arrow IPC (the default: fast, keeps dtypes and the index) or
Parquet (smaller for repetitive data), both written and read by pyarrow. **Nothing is ever pickled**: a peer is another person's kernel, and
unpickling its bytes would run whatever code it chose. Arrow and Parquet readers only
build columns of data; the one way Arrow could reach pickle (the Python extension type,
CVE-2023-47248) is refused below, whatever the pyarrow version.

Files travel with their base name only; a receiver writes them into a folder *it* chose,
under a name cleaned of any path, so a peer cannot write outside that folder.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas and pyarrow are imported when a DataFrame is actually shared
    import pandas as pd
    import pyarrow as pa

MAGIC = b"\x00IAVSHARE1\x00"  # a text or JSON message can never start with a NUL byte
DATAFRAME = "dataframe"
FILE = "file"
FORMATS = ("arrow", "parquet")
MAX_HEADER_BYTES = 64 * 1024
PICKLED_EXTENSION = b"arrow.py_extension_type"


class ShareError(ValueError):
    """A shared object that cannot be read (malformed, or a refused kind of data)."""


@dataclass(slots=True)
class Shared:
    """A decoded header and its payload; `value()` turns it into a DataFrame or bytes."""

    kind: str  # DATAFRAME or FILE
    name: str
    header: dict[str, Any]
    payload: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.payload)

    def dataframe(self) -> pd.DataFrame:
        if self.kind != DATAFRAME:
            raise ShareError(f"{self.name!r} is a {self.kind}, not a DataFrame")
        return decode_dataframe(self.header.get("format", "arrow"), self.payload)


def is_shared(data: Any) -> bool:
    """Whether a message received on a link is a shared object (and not plain bytes)."""
    return isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[: len(MAGIC)]) == MAGIC


def pack(kind: str, name: str, payload: bytes, **header: Any) -> bytes:
    head = json.dumps({"kind": kind, "name": name, "size": len(payload), **header}, separators=(",", ":")).encode()
    return MAGIC + len(head).to_bytes(4, "big") + head + payload


def unpack(data: bytes | bytearray | memoryview) -> Shared:
    """Split a shared object into header and payload, checking what can be checked cheaply."""
    view = memoryview(data)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise ShareError("not an iAvicenne shared object")
    start = len(MAGIC) + 4
    size = int.from_bytes(view[len(MAGIC) : start], "big")
    if size > MAX_HEADER_BYTES or start + size > len(view):
        raise ShareError("malformed shared object: bad header length")
    try:
        header = json.loads(bytes(view[start : start + size]))
    except ValueError:
        raise ShareError("malformed shared object: the header is not JSON") from None
    if not isinstance(header, dict) or header.get("kind") not in (DATAFRAME, FILE):
        raise ShareError(f"unknown kind of shared object: {header.get('kind') if isinstance(header, dict) else header!r}")
    payload = bytes(view[start + size :])
    if header.get("size") != len(payload):
        raise ShareError(f"truncated shared object: {len(payload)} bytes of {header.get('size')}")
    return Shared(header["kind"], str(header.get("name") or header["kind"]), header, payload)


# -- DataFrames ---------------------------------------------------------------------------
def encode_dataframe(df: pd.DataFrame, format: str = "arrow") -> bytes:
    """A DataFrame as Arrow IPC stream bytes (``format="arrow"``) or a Parquet file."""
    import pyarrow as pa

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
    table = pa.Table.from_pandas(df)  # keeps the index and dtypes in the schema's pandas metadata
    sink = io.BytesIO()
    if format == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, sink, compression="zstd")
    else:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return sink.getvalue()


def decode_dataframe(format: str, payload: bytes) -> pd.DataFrame:
    """Read what `encode_dataframe` wrote. Refuses Python-pickled extension types."""
    import pyarrow as pa

    try:
        if format == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(payload))
        elif format == "arrow":
            with pa.ipc.open_stream(payload) as reader:
                table = reader.read_all()
        else:
            raise ShareError(f"unknown DataFrame format {format!r}; expected one of {FORMATS}")
    except pa.ArrowException as error:
        raise ShareError(f"cannot read the shared DataFrame ({format}): {error}") from None
    _refuse_pickled_types(table.schema)
    return table.to_pandas()


def _refuse_pickled_types(schema: pa.Schema) -> None:
    import pyarrow as pa

    # arrow.py_extension_type is serialised with pickle: a peer must not choose our code.
    # pyarrow >= 14.0.1 reads it as its storage type, but the mark stays in the field's
    # metadata; refuse it either way, and anywhere in nested types
    def check(column: pa.Field) -> None:
        kind = column.type
        name = (column.metadata or {}).get(b"ARROW:extension:name", b"")
        if name == PICKLED_EXTENSION or (isinstance(kind, pa.ExtensionType) and kind.extension_name == PICKLED_EXTENSION.decode()):
            raise ShareError(f"column {column.name!r} is a pickled Python extension type; refused")
        for index in range(kind.num_fields):
            check(kind.field(index))

    for column in schema:
        check(column)


def pack_dataframe(df: pd.DataFrame, name: str = "dataframe", format: str = "arrow") -> bytes:
    payload = encode_dataframe(df, format)
    rows, columns = df.shape
    return pack(DATAFRAME, name, payload, format=format, rows=int(rows), columns=[str(c) for c in df.columns][:200])


# -- files --------------------------------------------------------------------------------
def pack_file(path: str | os.PathLike[str], name: str | None = None) -> bytes:
    source = Path(path)
    return pack(FILE, name or source.name, source.read_bytes())


_UNSAFE = re.compile(r"[^\w.\- ]+")


def safe_file_name(name: str) -> str:
    """A peer's file name reduced to one harmless path component."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or "received"


def save_file(shared: Shared, folder: str | os.PathLike[str]) -> Path:
    """Write a received file into `folder` (never elsewhere); an existing file is kept and
    the new one gets a numbered name."""
    target_dir = Path(folder)
    target_dir.mkdir(parents=True, exist_ok=True)
    name = safe_file_name(shared.name)
    stem, dot, suffix = name.partition(".")
    target = target_dir / name
    counter = 1
    while target.exists():
        target = target_dir / f"{stem} ({counter}){dot}{suffix}"
        counter += 1
    target.write_bytes(shared.payload)
    return target


def describe(header: dict[str, Any]) -> str:
    """One line for a transfer's label: ``sales (DataFrame 1000×3, arrow)``."""
    if header.get("kind") == DATAFRAME:
        columns = header.get("columns") or []
        return f"{header.get('name')} (DataFrame {header.get('rows')}×{len(columns)}, {header.get('format')})"
    return f"{header.get('name')} (file, {human_size(int(header.get('size') or 0))})"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"
