"""Logging with structured fields.

Every log line that concerns one object carries it as ``extra={"fields": {...}}`` (pool, node, build);
the formatter appends them as ``key=value`` so lines stay greppable and machine-parseable.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any


class FieldsFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: Mapping[str, Any] | None = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def fields(**kv: Any) -> dict[str, Any]:
    """``log.info("...", extra=fields(pool=name))``."""
    return {"fields": kv}


def configure(level: str = "INFO", *, process: str = "mcosup") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FieldsFormatter(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The client library logs every request at DEBUG; keep it quiet unless asked.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
