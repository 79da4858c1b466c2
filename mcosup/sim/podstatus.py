"""The Pod and container status the kubelet stand-in reports, and the termination message.

Pure: builds the dicts of ``containerStatuses`` (waiting / running / terminated), the ``Ready``
condition, and reads a container's termination message (the termination-log file, or with
``FallbackToLogsOnError`` the tail of its log, within the kubelet's limits).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcosup.model.objects import Obj

#: Bytes of the termination message a kubelet keeps (the API's limit is 4096 per container).
TERMINATION_MESSAGE_LIMIT = 4096
#: What FallbackToLogsOnError takes from the log: the last 80 lines, at most 2048 bytes.
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fallback_message(log_text: str) -> str:
    lines = log_text.splitlines()[-FALLBACK_LINES:]
    return "\n".join(lines)[-FALLBACK_BYTES:]


def termination_message(tfile: Path, log_path: Path, fallback_to_logs: bool) -> str:
    """The termination-log file's contents, else (when asked) the log's tail."""
    try:
        message = tfile.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
    except OSError:
        message = ""
    if not message.strip() and fallback_to_logs:
        try:
            message = fallback_message(log_path.read_text(errors="replace"))
        except OSError:
            message = ""
    return message


def waiting(container: Mapping[str, Any], reason: str, message: str) -> Obj:
    waiting: Obj = {"reason": reason}
    if message:
        waiting["message"] = message
    return container_status(container, {"waiting": waiting}, 0)


def container_status(container: Mapping[str, Any], state: Obj, restarts: int) -> Obj:
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": "running" in state,
        "started": "running" in state,
        "restartCount": restarts,
        "state": state,
    }


def ready_condition(ready: bool, *, reason: str | None = None) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now()}
    if reason:
        condition["reason"] = reason
    return condition
