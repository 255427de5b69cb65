"""``python -m gateway``: the same program as the ``gateway`` command (``cli/``)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
