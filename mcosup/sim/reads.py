"""Reads: get and list (label and field selectors, `limit`/`continue` pages, server-side Tables).

The selector parsing and matching here are shared with the watch (:mod:`mcosup.sim.watch`) and
deletecollection (:mod:`mcosup.sim.deletion`).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from multidict import MultiMapping

from mcosup.sim import errors, selectors, tables
from mcosup.sim.state import EmulatorState
from mcosup.sim.wire import Ctx, Target, as_version


class Reads(EmulatorState):
    """GET of one object or a collection."""

    def _get(self, t: Target) -> dict[str, Any]:
        assert t.name is not None
        obj = self.store.get(t.rt.key, t.namespace, t.name)
        if obj is None:
            raise errors.not_found(t.rt.plural, t.rt.group, t.name)
        return as_version(obj, t.api_version)

    def _selectors(
        self, t: Target, query: MultiMapping[str]
    ) -> tuple[selectors.LabelSelector, selectors.FieldSelector]:
        labels = selectors.parse_label_selector(query.get("labelSelector"))
        fields = selectors.parse_field_selector(query.get("fieldSelector"), t.rt.kind, builtin=t.rt.builtin)
        return labels, fields

    def _matching(
        self, t: Target, labels: selectors.LabelSelector, fields: selectors.FieldSelector
    ) -> list[dict[str, Any]]:
        name = fields.exact_name()
        if name is not None:
            if t.namespace is None and t.rt.namespaced:
                candidates = [o for o in self.store.items(t.rt.key) if o["metadata"]["name"] == name]
            else:
                one = self.store.get(t.rt.key, t.namespace, name)
                candidates = [one] if one is not None else []
        else:
            candidates = list(self.store.items(t.rt.key, t.namespace if t.rt.namespaced else None))
        return [
            o
            for o in candidates
            if (labels.empty or labels.matches(o["metadata"].get("labels"))) and fields.matches(o)
        ]

    def _list(self, t: Target, ctx: Ctx, as_table: bool = False) -> dict[str, Any]:
        labels, fields = self._selectors(t, ctx.query)
        items = self._matching(t, labels, fields)
        rv = self.store.rv
        meta: dict[str, Any] = {}
        token = ctx.query.get("continue")
        if token:
            try:
                state = orjson.loads(base64.urlsafe_b64decode(token.encode()))
                start = (str(state["start"][0]), str(state["start"][1]))
                rv = int(state["rv"])
            except (ValueError, KeyError, TypeError, IndexError):
                raise errors.bad_request(
                    f"invalid continue token: continue key is not valid: {token}"
                ) from None
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        limit_text = ctx.query.get("limit")
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise errors.bad_request(f"limit: invalid value {limit_text!r}") from None
            if 0 < limit < len(items):
                last = items[limit - 1]["metadata"]
                meta["continue"] = base64.urlsafe_b64encode(
                    orjson.dumps({"rv": rv, "start": [last.get("namespace", ""), last["name"]]})
                ).decode()
                if labels.empty and not fields.requirements:  # not known cheaply under a selector: left out
                    meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        meta["resourceVersion"] = str(rv)
        if not t.rt.builtin:
            # Unstructured lists keep an empty continue token (typed lists' omitempty drops it).
            meta.setdefault("continue", "")
        api_version = t.api_version
        if as_table:
            rv_text = meta.pop("resourceVersion")
            return self._table(t, ctx, [as_version(o, api_version) for o in items], rv_text, meta)
        if t.rt.builtin:
            # Typed lists on a real server omit kind/apiVersion on items; clients must not rely on them.
            out_items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
        else:
            out_items = [as_version(o, api_version) for o in items]
        return {"kind": f"{t.rt.kind}List", "apiVersion": api_version, "metadata": meta, "items": out_items}

    def _table(
        self, t: Target, ctx: Ctx, items: list[dict[str, Any]], rv: str, meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        cols = tables.columns(t.rt, t.rt.printer_columns.get(t.version))
        return tables.table(cols, items, ctx.query.get("includeObject", "Metadata"), rv, meta)
