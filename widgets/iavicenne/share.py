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

**A few bytes must not become gigabytes.** A 445 KiB Parquet file of zeros decodes to
763 MiB; a tiny dictionary can stand for the same long string a million times. So a
DataFrame is decoded only once its size is known from what describes it, within
`max_rows` and `max_bytes` (``join(max_dataframe_rows=..., max_dataframe_bytes=...)``):
for Parquet its footer (rows, the bytes its pages decompress to, the values of each
column chunk), for an Arrow stream its message headers (rows, and each buffer's size,
also once decompressed); strings kept as a dictionary are counted before they are
expanded, and types whose decoded size is not bounded by their bytes (run-end encoded,
views) are refused.

Files travel with their base name only; a receiver writes them into a folder *it* chose,
under a name cleaned of any path, so a peer cannot write outside that folder.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
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
#: what a shared DataFrame may hold once decoded unless told (join's max_dataframe_rows / _bytes)
MAX_ROWS = 10_000_000
MAX_BYTES = 512 * 1024 * 1024
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

    def dataframe(self, *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> pd.DataFrame:
        """The DataFrame, if it fits in `max_rows` and `max_bytes` (see `decode_dataframe`)."""
        if self.kind != DATAFRAME:
            raise ShareError(f"{self.name!r} is a {self.kind}, not a DataFrame")
        return decode_dataframe(self.header.get("format", "arrow"), self.payload, max_rows=max_rows, max_bytes=max_bytes)


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


def decode_dataframe(format: str, payload: bytes, *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> pd.DataFrame:
    """Read what `encode_dataframe` wrote, once it is known to fit: at most `max_rows`
    rows and about `max_bytes` bytes decoded (`ShareError` otherwise, before anything
    large is built). Refuses Python-pickled extension types."""
    import pyarrow as pa

    budget = _Budget(max_rows, max_bytes)
    try:
        if format == "parquet":
            table = _read_parquet(payload, budget)
        elif format == "arrow":
            table = _read_arrow(payload, budget)
        else:
            raise ShareError(f"unknown DataFrame format {format!r}; expected one of {FORMATS}")
    except pa.ArrowException as error:
        raise ShareError(f"cannot read the shared DataFrame ({format}): {error}") from None
    return table.to_pandas()


@dataclass(frozen=True, slots=True)
class _Budget:
    """What a shared DataFrame may cost once decoded; the errors name the options."""

    max_rows: int
    max_bytes: int

    def rows(self, rows: int) -> None:
        if rows > self.max_rows:
            raise ShareError(
                f"the shared DataFrame has {rows:,} rows, over the limit of {self.max_rows:,} "
                "(max_dataframe_rows, an option of join(), raises it); refused before decoding"
            )

    def bytes(self, size: int, what: str) -> None:
        if size > self.max_bytes:
            raise ShareError(
                f"the shared DataFrame would take about {human_size(size)} once decoded ({what}), over the limit of "
                f"{human_size(self.max_bytes)} (max_dataframe_bytes, an option of join(), raises it); refused before decoding"
            )


def _check_schema(schema: pa.Schema) -> None:
    """Refuse what must not be decoded: pickled Python extension types, and types whose
    decoded size the bytes that carry them do not bound."""
    import pyarrow as pa

    # run-end encoded arrays and views (several values pointing at the same bytes) expand
    # on decoding by as much as the sender likes: a few bytes could become gigabytes
    unbounded = [getattr(pa.types, name) for name in _UNBOUNDED if hasattr(pa.types, name)]

    # arrow.py_extension_type is serialised with pickle: a peer must not choose our code.
    # pyarrow >= 14.0.1 reads it as its storage type, but the mark stays in the field's
    # metadata; refuse it either way, and anywhere in nested types
    def check(column: pa.Field) -> None:
        kind = column.type
        name = (column.metadata or {}).get(b"ARROW:extension:name", b"")
        if name == PICKLED_EXTENSION or (
            isinstance(kind, pa.ExtensionType) and kind.extension_name == PICKLED_EXTENSION.decode()
        ):
            raise ShareError(f"column {column.name!r} is a pickled Python extension type; refused")
        if isinstance(kind, pa.ExtensionType):
            check(pa.field(column.name, kind.storage_type))
        if any(test(kind) for test in unbounded):
            raise ShareError(f"column {column.name!r} is of type {kind}, whose decoded size is not bounded by its bytes; refused")
        if pa.types.is_dictionary(kind):
            check(pa.field(column.name, kind.value_type))
        for index in range(kind.num_fields):
            check(kind.field(index))

    for column in schema:
        check(column)


_UNBOUNDED = ("is_run_end_encoded", "is_string_view", "is_binary_view", "is_list_view", "is_large_list_view")


def _row_width(schema: pa.Schema) -> int:
    """Bytes a row takes at least in the DataFrame: a value, or a pointer to an object, per column."""
    import pyarrow as pa

    width = 0
    for column in schema:
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.index_type  # a Categorical: its codes
        bits = getattr(kind, "bit_width", 0) if pa.types.is_primitive(kind) or pa.types.is_fixed_size_binary(kind) else 0
        width += max(1, bits // 8) if bits else 8  # a pointer (an object, or nothing: null)
    return width


def _read_arrow(payload: bytes, budget: _Budget) -> pa.Table:
    """An Arrow IPC stream, after its message headers were read: the schema, and for
    each batch its rows and its body's size once decompressed (compressed buffers say
    their size in their first 8 bytes)."""
    import pyarrow as pa

    source = pa.py_buffer(payload)
    messages = pa.ipc.MessageReader.open_stream(source)
    schema = pa.ipc.read_schema(messages.read_next_message())
    _check_schema(schema)
    rows = size = 0
    while True:
        try:
            message = messages.read_next_message()
        except StopIteration:
            break
        batch_rows, batch_bytes = _batch_size(message)
        rows += batch_rows
        size += batch_bytes
        budget.rows(rows)
        budget.bytes(size, "its batches' bytes")
    budget.bytes(rows * _row_width(schema), f"{rows:,} rows × {len(schema)} columns")
    with pa.ipc.open_stream(source) as reader:  # zero-copy when uncompressed: the bytes above
        table = reader.read_all()
    budget.bytes(_decoded_bytes(table, table.schema), "its values")
    return table


def _batch_size(message: pa.ipc.Message) -> tuple[int, int]:
    """(rows, decoded body bytes) of a record or dictionary batch message."""
    try:
        root = _Table(memoryview(message.metadata))
        header_type = root.scalar(1, "<B", 0)
        header = root.table(2)
        if header_type == _DICTIONARY_BATCH and header is not None:
            batch, rows_count = header.table(1), False
        elif header_type == _RECORD_BATCH:
            batch, rows_count = header, True
        else:
            raise ShareError(f"the shared DataFrame's stream holds a message of type {header_type}, not a batch; refused")
        if batch is None:
            raise ShareError("malformed shared DataFrame: a batch message without its batch")
        rows = batch.scalar(0, "<q", 0)
        start, count = batch.vector(2)
        body = memoryview(message.body) if message.body is not None else memoryview(b"")
        size = 0
        compressed = batch.table(3) is not None
        for index in range(count):
            offset, length = _unpack("<qq", root.data, start + 16 * index)
            if length < 0 or offset < 0 or offset + length > len(body):
                raise ShareError("malformed shared DataFrame: a buffer outside its batch")
            if compressed and length >= 8:
                (declared,) = _unpack("<q", body, offset)
                size += length - 8 if declared == -1 else max(declared, 0)
            else:
                size += length
    except (struct.error, IndexError):
        raise ShareError("malformed shared DataFrame: its stream's message headers cannot be read") from None
    return (rows if rows_count else 0), size


# Arrow's IPC message headers are flatbuffers (format/Message.fbs); what the checks above
# need is a few fields of them, read here without a flatbuffers library.
_RECORD_BATCH = 3  # MessageHeader union: Schema 1, DictionaryBatch 2, RecordBatch 3
_DICTIONARY_BATCH = 2


def _unpack(fmt: str, data: memoryview, offset: int) -> tuple[Any, ...]:
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        raise struct.error("out of bounds")
    return struct.unpack_from(fmt, data, offset)


class _Table:
    """A flatbuffers table: ``scalar``, ``table`` and ``vector`` fields by their index."""

    def __init__(self, data: memoryview, position: int | None = None) -> None:
        self.data = data
        self.position = _unpack("<I", data, 0)[0] if position is None else position
        self.vtable = self.position - _unpack("<i", data, self.position)[0]
        self.vtable_size = _unpack("<H", data, self.vtable)[0]

    def _field(self, index: int) -> int:
        entry = 4 + 2 * index
        return _unpack("<H", self.data, self.vtable + entry)[0] if entry < self.vtable_size else 0

    def scalar(self, index: int, fmt: str, default: int) -> int:
        offset = self._field(index)
        return _unpack(fmt, self.data, self.position + offset)[0] if offset else default

    def table(self, index: int) -> _Table | None:
        offset = self._field(index)
        if not offset:
            return None
        at = self.position + offset
        return _Table(self.data, at + _unpack("<I", self.data, at)[0])

    def vector(self, index: int) -> tuple[int, int]:
        """(start of the elements, count) of a vector field; (0, 0) when absent."""
        offset = self._field(index)
        if not offset:
            return 0, 0
        at = self.position + offset
        start = at + _unpack("<I", self.data, at)[0]
        return start + 4, _unpack("<I", self.data, start)[0]


def _read_parquet(payload: bytes, budget: _Budget) -> pa.Table:
    """A Parquet file, after its footer was read: rows, the bytes its pages decompress
    to, and what its values take once decoded. Strings stored with a dictionary are read
    as dictionaries and counted before they are expanded (a few bytes of dictionary can
    stand for the same long string a million times)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(io.BytesIO(payload))
    schema = parquet.schema_arrow
    _check_schema(schema)
    meta = parquet.metadata
    budget.rows(meta.num_rows)
    pages = values = 0
    dictionaries: set[str] = set()
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            pages += chunk.total_uncompressed_size
            width = _PHYSICAL_WIDTH.get(chunk.physical_type)
            if width is None:  # FIXED_LEN_BYTE_ARRAY
                width = parquet.schema.column(index).length
            values += chunk.num_values * max(width, 1)
            if chunk.physical_type == "BYTE_ARRAY" and any(e.endswith("DICTIONARY") for e in chunk.encodings):
                dictionaries.add(chunk.path_in_schema)
    budget.bytes(pages, "its pages, decompressed")
    budget.bytes(max(values, meta.num_rows * _row_width(schema)), f"{meta.num_rows:,} rows × {len(schema)} columns")
    table = pq.ParquetFile(io.BytesIO(payload), read_dictionary=sorted(dictionaries) or None).read()
    budget.bytes(_decoded_bytes(table, schema), "its values, strings expanded")
    return table.cast(schema) if table.schema != schema else table


_PHYSICAL_WIDTH = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8, "BYTE_ARRAY": 4}


def _decoded_bytes(table: pa.Table, schema: pa.Schema) -> int:
    """What `table`'s values take once every dictionary that `schema` does not keep as one
    (in it, a dictionary column is a Categorical: codes and categories) is expanded."""
    import pyarrow as pa

    total = 0
    for column, wanted in zip(table.columns, schema, strict=True):
        kept = pa.types.is_dictionary(wanted.type)
        for chunk in column.chunks:
            total += chunk.nbytes if kept else _expanded_bytes(chunk)
    return total


def _is_binary(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
    )


def _expanded_bytes(array: pa.Array) -> int:
    """The bytes of `array` with its dictionaries expanded (counted, not built)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(array.type):
        values = array.dictionary
        if not _is_binary(values.type):
            return _expanded_bytes(values) * len(array) // max(len(values), 1) + 8 * len(array)
        indices = array.indices.drop_null().to_numpy(zero_copy_only=False)
        lengths = pc.binary_length(values).fill_null(0).to_numpy(zero_copy_only=False)
        counts = np.bincount(indices, minlength=len(values))[: len(values)]
        return int(counts @ lengths) + 8 * len(array)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind) or pa.types.is_map(kind):
        return 8 * len(array) + _expanded_bytes(array.flatten())
    if pa.types.is_struct(kind):
        return sum(_expanded_bytes(array.field(index)) for index in range(kind.num_fields))
    return int(array.nbytes)


def pack_dataframe(df: pd.DataFrame, name: str = "dataframe", format: str = "arrow") -> bytes:
    payload = encode_dataframe(df, format)
    rows = df.shape[0]
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
