"""The report's page: plain data from the queries into the Jinja2 templates.

The page opens from a USB stick on any laptop: no network, no external
script, style sheet or font. Everything read from the log is untrusted text
(a holder's name is whatever the organizer typed; a log may come from
anywhere). It reaches the page through the templates' autoescaping, or as
JSON in one ``<script type="application/json">`` block with ``<``, ``>`` and
``&`` escaped, which the page's script reads with ``JSON.parse`` and writes
with ``textContent`` only. The page's Content-Security-Policy runs only its
own script (by hash) and loads nothing from anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter, defaultdict
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from ...words import plural
from .charts import OTHER_COLOUR, hbars, heatmap, hour_axes, stacked_bars, thousands
from .clock import Clock
from .queries import LIST_CAP, ReportData
from .reasons import (
    DENIAL_CLASSES,
    DOOR_ALARMS,
    FORGED_REASONS,
    REASON_LABELS,
    REVOKED_REASONS,
    class_of_reason,
    reason_words,
)

RENDER_CAP = 1000  # table rows the page draws at once; the filter narrows the rest

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("scanner.manager", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return plural(n, one, many, shown=thousands(n))


def _gap(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


_SAFE_JSON = str.maketrans(
    {"&": "\\u0026", "<": "\\u003c", ">": "\\u003e", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _script_json(value: Any) -> Markup:
    """JSON safe inside a <script> element: no ``</script>``, no ``<!--``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Markup(text.translate(_SAFE_JSON))  # escaped just above


_TEMPLATES.filters["n"] = thousands
_TEMPLATES.filters["plural"] = _plural
_TEMPLATES.filters["reason"] = reason_words
_TEMPLATES.filters["gap"] = _gap
_TEMPLATES.filters["f1"] = lambda v: f"{v:.1f}"


@cache
def _script_source() -> tuple[str, str]:
    """The page's script and its CSP hash (the only script the page may run)."""
    text = _TEMPLATES.get_template("report.js").render()
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return text, "sha256-" + base64.b64encode(digest).decode("ascii")


def render(d: ReportData, clock: Clock, *, db_path: Path, now: datetime) -> str:
    """The page for what :func:`~.queries.gather` read from ``db_path``, made at ``now``."""
    hours, zone_series, zone_colour, gate_grid = hour_axes(d.hourly, clock)
    layout = d.layout
    events = ", ".join(sorted(d.events)) or "unknown event"
    script, script_hash = _script_source()

    denial_items = sorted(d.denials.items(), key=lambda kv: (-kv[1], kv[0]))
    denial_classes = sorted(
        {class_of_reason(r) for r, _ in denial_items},
        key=list(DENIAL_CLASSES).index,
    )

    # Inside now, per zone: everyone in it or in a zone within it.
    tree = layout.zone_tree([*(p[1] for p in d.places if p[1]), *(r["where"] for r in d.inside)])
    by_zone: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in d.inside:
        for zone in layout.enclosing(row["where"]) or (row["where"],):
            by_zone[zone].append(row)
    inside_zones: list[dict[str, Any]] = [
        {
            "zone": zone,
            "depth": depth,
            "count": len(by_zone[zone]),
            "direct": sum(1 for r in by_zone[zone] if r["where"] == zone),
            "tiers": Counter(r["tier"] or "?" for r in by_zone[zone]).most_common(),
            "people": [_person(r, clock) for r in by_zone[zone][:LIST_CAP]],
        }
        for zone, depth in tree
        if by_zone[zone]
    ]

    copies = [
        {
            "serial": p["serial"],
            "holder": p["holder"] or p["prev_holder"],
            "tier": p["tier"],
            "first": {
                "at": clock.show(p["prev_ts"]),
                "decision": p["prev_decision"],
                "gate": p["prev_gate"],
                "door": p["prev_door"],
                "zone": p["prev_zone"],
                "direction": p["prev_direction"],
            },
            "then": {
                "at": clock.show(p["ts"]),
                "decision": p["decision"],
                "gate": p["gate"],
                "door": p["door"],
                "zone": p["zone"],
                "direction": p["direction"],
            },
            "gap": p["gap"],
            "walk": p["walk"],
            "untrusted": "untrusted" in (p["clock"], p["prev_clock"]),
        }
        for p in d.copies
    ]

    table_rows = [
        [
            clock.show(r["ts"]),
            r["gate"],
            r["door"],
            r["zone"],
            r["direction"],
            r["serial"],
            r["holder"],
            r["tier"],
            r["decision"],
            r["reason"],
            r["message"],
            bool(r["copy"]),
            r["clock"],
        ]
        for r in d.table
    ]
    data = {
        "table": {"rows": table_rows, "renderCap": RENDER_CAP},
        "reasons": REASON_LABELS,
        "moves": d.moves,
        "renderCap": RENDER_CAP,
    }
    walks = [
        {"doors": sorted(pair), "through": through, "seconds": w.total_seconds()}
        for (pair, through), w in sorted(
            layout.venue.walks.items(), key=lambda kv: (sorted(kv[0][0]), kv[0][1] or "")
        )
    ]
    context = {
        "events": events,
        "clock": clock,
        "d": d,
        "made": now.astimezone(clock.zone).strftime("%Y-%m-%d %H:%M"),
        "db_name": db_path.name,
        "first": clock.show(d.first_ts),
        "last": clock.show(d.last_ts),
        "people_inside": len(d.inside),
        "zone_sum": sum(z["count"] for z in inside_zones),
        "inside_zones": inside_zones,
        "list_cap": LIST_CAP,
        "entries": {
            "legend": [(name, colour) for name, colour, _ in zone_series],
            "bars": stacked_bars(
                [h for h, _ in hours],
                zone_series,
                y_label="entries",
                label="Granted entries per hour, stacked by zone",
            )
            if hours
            else None,
            "heat": heatmap(gate_grid, [h for h, _ in hours]) if hours else None,
        },
        "denials": {
            "legend": [DENIAL_CLASSES[c] for c in denial_classes],
            "bars": hbars(
                [
                    (reason_words(r), n, DENIAL_CLASSES[class_of_reason(r)][1])
                    for r, n in denial_items
                ],
                label="Denials by reason",
            ),
            "rows": [
                {
                    "label": reason_words(r),
                    "code": r,
                    "n": n,
                    "gate": d.denials_by_gate[r].most_common(1)[0],
                }
                for r, n in denial_items
            ],
        },
        "inside_bars": hbars(
            [
                (
                    z["zone"],
                    z["count"],
                    zone_colour.get(z["zone"], OTHER_COLOUR),
                )
                for z in inside_zones
            ],
            label="People inside now, by zone (a zone counts the zones within it)",
        ),
        "copies": copies,
        "walk": {
            "on": layout.checks_copies,
            "default": layout.venue.walk_default.total_seconds(),
            "walks": walks,
            "from_policy": layout.from_policy,
        },
        "forged": sum(d.denials[r] for r in FORGED_REASONS),
        "revoked": sum(d.denials[r] for r in REVOKED_REASONS),
        "attempts": [
            {**a, "at": clock.show(a["ts"]), "label": reason_words(a["reason"])} for a in d.attempts
        ],
        "gates": [
            {
                "gate": gate,
                "zones": ", ".join(sorted(g["zones"])),
                "doors": ", ".join(sorted(g["doors"])),
                "directions": ", ".join(sorted(g["directions"])),
                "scans": g["scans"],
                "granted": g["granted"],
                "denied": g["denied"],
                "first": clock.show(g["first_ts"]),
                "last": clock.show(g["last_ts"]),
                "export": clock.show(g["last_export_at"]),
                "overrides": g["overrides"],
                "alarms": ", ".join(
                    f"{thousands(g[kind])} {label}"
                    for kind, label in DOOR_ALARMS.items()
                    if g[kind]
                ),
            }
            for gate, g in sorted(d.gates.items())
        ],
        "show_days": [{**day, **_day_span(day, clock)} for day in d.show_days],
        "overrides": [
            {
                **o,
                "at": clock.show(o["ts"]),
                "denied": reason_words(o["denied_reason"]) if o["denied_reason"] else "?",
            }
            for o in d.overrides
        ],
        "alarms": [
            {"at": clock.show(a["ts"]), "gate": a["gate"], "what": DOOR_ALARMS[a["kind"]]}
            for a in d.alarms
        ],
        "table_note": _table_note(d),
        "moves_note": _moves_note(d),
        "zone_choices": [
            {"zone": z, "depth": depth}
            for z, depth in layout.zone_tree(d.moves.get("locations", [])[1:])
        ],
        "data": _script_json(data),
        "script": Markup(script),  # our own file, hashed for the CSP
        "csp": (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src '{script_hash}'; base-uri 'none'; form-action 'none'"
        ),
    }
    return _TEMPLATES.get_template("report.html").render(context)


def _day_span(day: dict[str, Any], clock: Clock) -> dict[str, str]:
    """A show day's name and hours as the page shows them ("Day 2", "Sat 06
    Dec 18:00", "02:00 Sun 07 Dec" when it runs past midnight)."""
    if day["day"] is None:
        return {"name": "outside the show days", "from": "", "to": ""}
    opens, curfew = day["opens"].astimezone(clock.zone), day["curfew"].astimezone(clock.zone)
    to = (
        curfew.strftime("%H:%M")
        if curfew.date() == opens.date()
        else curfew.strftime("%a %d %b %H:%M")
    )
    return {"name": f"Day {day['day']}", "from": opens.strftime("%a %d %b %H:%M"), "to": to}


def _person(row: dict[str, Any], clock: Clock) -> dict[str, Any]:
    return {
        "holder": row["holder"],
        "tier": row["tier"],
        "serial": row["serial"],
        "where": row["where"],
        "since": clock.show(row["ts"]),
        "gate": row["gate"],
        "door": row["door"],
    }


def _table_note(d: ReportData) -> str:
    if len(d.table) >= d.total:
        return f"All {_plural(d.total, 'scan')}, most recent first."
    return (
        f"This table holds the {thousands(d.table_recent)} most recent scans and "
        f"{_plural(d.table_denials, 'earlier denial')}: {thousands(len(d.table))} of "
        f"{thousands(d.total)} scans. The CSV export (--csv) has them all."
    )


def _moves_note(d: ReportData) -> str | None:
    if not d.moves or d.moves.get("cut") is None:
        return None
    held = len(d.moves["scans"]) // 5
    return (
        f"This log has {thousands(d.with_serial)} scans of passes; the page holds the "
        f"{thousands(held)} from {d.moves['cutText']} on (and where everyone was then), so "
        "the time control starts there and paths show those scans. The CSV export "
        "(--csv) has every scan."
    )
