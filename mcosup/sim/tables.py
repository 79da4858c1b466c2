"""Server-side printing: `meta.k8s.io/v1` Table answers for `kubectl get`.

Pure: objects in, Table dict out. Custom resources get their CRD's `additionalPrinterColumns`
(JSONPath subset: `.a.b`, `.a[0].b`, `.a[?(@.k=="v")].b`); a few built-in kinds get the columns a
real server prints (Pod, Node, Namespace, Event, Job); every other kind gets Name and Age. Date columns
are rendered as ages ("5m", "3h2m"), as the apiserver does.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

from mcosup.sim.resources import ResourceType

Column = tuple[
    str, str, str, Callable[[dict[str, Any]], Any], int
]  # name, type, description, getter, priority

_FILTER = re.compile(r"^\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")
_INDEX = re.compile(r"^\[(\d+)\]")
_FIELD = re.compile(r"^\.([A-Za-z0-9_-]+)")


def json_path(obj: Any, path: str) -> Any:
    """Evaluate the JSONPath subset CRD printer columns use; None when nothing matches."""
    rest = path.strip()
    if rest.startswith("{") and rest.endswith("}"):
        rest = rest[1:-1]
    current: Any = obj
    while rest:
        if m := _FIELD.match(rest):
            current = current.get(m.group(1)) if isinstance(current, dict) else None
        elif m := _INDEX.match(rest):
            idx = int(m.group(1))
            current = current[idx] if isinstance(current, list) and idx < len(current) else None
        elif m := _FILTER.match(rest):
            key, value = m.group(1), m.group(2)
            current = (
                next((i for i in current if isinstance(i, dict) and str(i.get(key)) == value), None)
                if isinstance(current, list)
                else None
            )
        else:
            return None
        rest = rest[m.end() :]
        if current is None:
            return None
    return current


def _name(o: dict[str, Any]) -> Any:
    return o["metadata"]["name"]


def _age(o: dict[str, Any]) -> Any:
    return o["metadata"].get("creationTimestamp")


NAME: Column = ("Name", "string", "Name must be unique within a namespace.", _name, 0)
AGE: Column = ("Age", "date", "The age of the object.", _age, 0)


def _pod_ready(o: dict[str, Any]) -> str:
    total = len((o.get("spec") or {}).get("containers") or [])
    statuses = (o.get("status") or {}).get("containerStatuses") or []
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(o: dict[str, Any]) -> str:
    if o["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = o.get("status") or {}
    for s in status.get("containerStatuses") or []:
        state = s.get("state") or {}
        for key in ("waiting", "terminated"):
            reason = (state.get(key) or {}).get("reason")
            if reason and not (
                key == "terminated" and reason == "Completed" and status.get("phase") != "Succeeded"
            ):
                return str(reason)
    return str(status.get("reason") or status.get("phase") or "Unknown")


def _pod_readiness_gates(o: dict[str, Any]) -> str:
    gates = (o.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = {c.get("type"): c.get("status") for c in (o.get("status") or {}).get("conditions") or []}
    met = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{met}/{len(gates)}"


def _pod_restarts(o: dict[str, Any]) -> int:
    return sum(int(s.get("restartCount", 0)) for s in (o.get("status") or {}).get("containerStatuses") or [])


def _node_status(o: dict[str, Any]) -> str:
    ready = next(
        (c for c in (o.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None
    )
    text = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    if (o.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _node_roles(o: dict[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix) :] for k in o["metadata"].get("labels") or {} if k.startswith(prefix))
    return ",".join(r for r in roles if r) or "<none>"


def _event_object(o: dict[str, Any]) -> str:
    inv = o.get("involvedObject") or {}
    return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"


def _data_count(o: dict[str, Any]) -> int:
    return len(o.get("data") or {}) + len(o.get("binaryData") or {})


def _job_condition(o: dict[str, Any], type_: str) -> bool:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return bool(c.get("status") == "True")
    return False


def _job_status(o: dict[str, Any]) -> str:
    if _job_condition(o, "Complete"):
        return "Complete"
    if _job_condition(o, "Failed"):
        return "Failed"
    if o["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for type_ in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _job_condition(o, type_):
            return type_
    return "Running"


def _job_completions(o: dict[str, Any]) -> str:
    spec, succeeded = o.get("spec") or {}, int((o.get("status") or {}).get("succeeded") or 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(o: dict[str, Any]) -> str:
    status = o.get("status") or {}
    start, end = _parse(status.get("startTime")), _parse(status.get("completionTime"))
    if start is None:
        return ""
    return human_duration(((end or datetime.datetime.now(datetime.UTC)) - start).total_seconds())


def _parse(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def _template_containers(o: dict[str, Any], key: str) -> str:
    spec = (((o.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return ",".join(str(c.get(key, "")) for c in spec.get("containers") or [])


def _selector(o: dict[str, Any]) -> str:
    match = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(match.items())) or "<none>"


BUILTIN_COLUMNS: dict[str, list[Column]] = {
    "Job": [
        NAME,
        ("Status", "string", "Status of the job.", _job_status, 0),
        ("Completions", "string", "The number of pods which reached phase Succeeded.", _job_completions, 0),
        ("Duration", "string", "Time required to complete the job.", _job_duration, 0),
        AGE,
        (
            "Containers",
            "string",
            "Names of each container in the template.",
            lambda o: _template_containers(o, "name"),
            1,
        ),
        (
            "Images",
            "string",
            "Images referenced by each container in the template.",
            lambda o: _template_containers(o, "image"),
            1,
        ),
        ("Selector", "string", "A label query over pods that should match the pod count.", _selector, 1),
    ],
    # Columns as kube-apiserver's printers define them (descriptions shortened: clients show names).
    "ConfigMap": [NAME, ("Data", "string", "Number of data keys.", _data_count, 0), AGE],
    "Secret": [
        NAME,
        (
            "Type",
            "string",
            "Used to facilitate programmatic handling of secret data.",
            lambda o: o.get("type"),
            0,
        ),
        ("Data", "string", "Number of data keys.", _data_count, 0),
        AGE,
    ],
    "Pod": [
        NAME,
        (
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
            _pod_ready,
            0,
        ),
        ("Status", "string", "The aggregate status of the containers in this pod.", _pod_status, 0),
        (
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted.",
            _pod_restarts,
            0,
        ),
        AGE,
        (
            "IP",
            "string",
            "The IP address assigned to the pod.",
            lambda o: (o.get("status") or {}).get("podIP") or "<none>",  # the printer's own placeholder
            1,
        ),
        (
            "Node",
            "string",
            "The name of the node.",
            lambda o: (o.get("spec") or {}).get("nodeName") or "<none>",
            1,
        ),
        (
            "Nominated Node",
            "string",
            "The name of the node where the pod is nominated to run (preemption).",
            lambda o: (o.get("status") or {}).get("nominatedNodeName") or "<none>",
            1,
        ),
        ("Readiness Gates", "string", "The readiness gates of the pod.", _pod_readiness_gates, 1),
    ],
    "Node": [
        NAME,
        ("Status", "string", "The status of the node", _node_status, 0),
        ("Roles", "string", "The roles of the node", _node_roles, 0),
        AGE,
        (
            "Version",
            "string",
            "Kubelet Version reported by the node.",
            lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
            0,
        ),
    ],
    "Namespace": [
        NAME,
        (
            "Status",
            "string",
            "The status of the namespace",
            lambda o: (o.get("status") or {}).get("phase"),
            0,
        ),
        AGE,
    ],
    "Event": [
        (
            "Last Seen",
            "date",
            "Time when this Event was last observed.",
            lambda o: o.get("lastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp"),
            0,
        ),
        ("Type", "string", "Type of this event (Normal, Warning).", lambda o: o.get("type"), 0),
        ("Reason", "string", "Why the action was taken.", lambda o: o.get("reason"), 0),
        ("Object", "string", "The object that this event is about.", _event_object, 0),
        (
            "Message",
            "string",
            "A human-readable description of the status of this operation.",
            lambda o: o.get("message"),
            0,
        ),
    ],
}


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration: "45s", "3m20s", "12m", "2h5m", "20h", "3d4h", "12d", "2y30d"."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    if h < 24 * 8:
        return f"{h // 24}d{h % 24}h" if h % 24 else f"{h // 24}d"
    if h < 24 * 365 * 2:
        return f"{h // 24}d"
    if h < 24 * 365 * 8:
        d = h // 24
        return f"{d // 365}y{d % 365}d" if d % 365 else f"{d // 365}y"
    return f"{h // 24 // 365}y"


def _age_of(value: Any, now: datetime.datetime) -> Any:
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return value
    return human_duration((now - moment).total_seconds())


def _getter(path: str) -> Callable[[dict[str, Any]], Any]:
    return lambda obj: json_path(obj, path)


def columns(rt: ResourceType, crd_columns: list[dict[str, Any]] | None) -> list[Column]:
    if not rt.builtin:
        if not crd_columns:
            return [NAME, AGE]
        out: list[Column] = [NAME]
        for col in crd_columns:
            path = str(col.get("jsonPath", ""))
            out.append(
                (
                    str(col.get("name", "")),
                    str(col.get("type", "string")),
                    str(col.get("description", "")),
                    _getter(path),
                    int(col.get("priority", 0)),
                )
            )
        return out
    return BUILTIN_COLUMNS.get(rt.kind, [NAME, AGE])


def table(
    cols: list[Column],
    objects: list[dict[str, Any]],
    include: str,
    resource_version: str,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Table; `include` is the includeObject parameter: None, Metadata (default) or Object."""
    rows = []
    now = datetime.datetime.now(datetime.UTC)
    for obj in objects:
        cells = [getter(obj) for _, _, _, getter, _ in cols]
        cells = [
            _age_of(c, now) if kind == "date" else c
            for c, (_, kind, _, _, _) in zip(cells, cols, strict=True)
        ]
        row: dict[str, Any] = {"cells": cells}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version, **(extra_meta or {})},
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": desc,
                "priority": priority,
            }
            for name, kind, desc, _, priority in cols
        ],
        "rows": rows,
    }


def wants_table(accept: str) -> bool:
    """True when the client asks for a Table first (kubectl get does; it also accepts plain JSON)."""
    first = accept.split(",")[0]
    return "as=Table" in first and "g=meta.k8s.io" in first
