"""Files made once per instance folder (generated keys), safe when workers start together."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_once(path: Path, content: bytes, mode: int = 0o600) -> tuple[bytes, bool]:
    """The file's content, writing ``content`` first if it does not exist; and whether this
    call made it.

    The content is written to a temporary file beside it and published with a hard link,
    which fails when the name exists: two workers starting at once agree on one key, and a
    reader never sees a half-written file (an exclusive create alone would let the second
    read it before the first finished writing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_bytes(), False
        return content, True
    finally:
        os.unlink(tmp)
