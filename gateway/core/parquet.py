"""Apache Parquet files of export rows (pyarrow): the one module that knows the format.

``core/export.py`` decides what a row holds and hands rows over a row group at a time, so a
big export is written as it is read and never held whole; this module turns the catalogue's
field types into Arrow's and writes the groups (zstd-compressed). Kept apart so that nothing
else imports pyarrow: the web layer, which lists exports, never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

# The catalogue's field types a file can hold (a position is never exported: catalogue.py).
ARROW_TYPES: dict[str, Any] = {
    "string": pa.string(),
    "url": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}


class ParquetSink:
    """A Parquet file being written: one row group per ``write``; at ``close`` its rows are
    put in order of time (the hour), pseudonym and type, so that their order tells nothing
    of how the store keeps them (slot groups by a hash of the subject id, and each event's
    place within its hour). That reads the file's table once, at the end."""

    SORT = ("ts", "subject", "type")

    def __init__(
        self, path: Path, columns: Sequence[tuple[str, str]], metadata: Mapping[str, str]
    ) -> None:
        self.path = path
        self._group = 1  # the largest row group written: kept when the rows are sorted
        unknown = [kind for _, kind in columns if kind not in ARROW_TYPES]
        if unknown:
            raise ValueError(f"no Parquet column for the field types {unknown}")
        self.schema = pa.schema(
            [pa.field(name, ARROW_TYPES[kind]) for name, kind in columns],
            metadata={k.encode(): v.encode() for k, v in metadata.items()},
        )
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def write(self, columns: Mapping[str, list[Any]]) -> None:
        table = pa.Table.from_pydict(dict(columns), schema=self.schema)
        self._group = max(self._group, table.num_rows)
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()
        table = pq.read_table(str(self.path), schema=self.schema)
        order = [(name, "ascending") for name in self.SORT if name in self.schema.names]
        if order and table.num_rows:
            pq.write_table(
                table.sort_by(order),
                str(self.path),
                compression="zstd",
                row_group_size=self._group,
            )
