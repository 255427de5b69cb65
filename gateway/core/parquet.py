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
    """A Parquet file being written: one row group per ``write``."""

    def __init__(
        self, path: Path, columns: Sequence[tuple[str, str]], metadata: Mapping[str, str]
    ) -> None:
        unknown = [kind for _, kind in columns if kind not in ARROW_TYPES]
        if unknown:
            raise ValueError(f"no Parquet column for the field types {unknown}")
        self.schema = pa.schema(
            [pa.field(name, ARROW_TYPES[kind]) for name, kind in columns],
            metadata={k.encode(): v.encode() for k, v in metadata.items()},
        )
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="zstd")

    def write(self, columns: Mapping[str, list[Any]]) -> None:
        self._writer.write_table(pa.Table.from_pydict(dict(columns), schema=self.schema))

    def close(self) -> None:
        self._writer.close()
