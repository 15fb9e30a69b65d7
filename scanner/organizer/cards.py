"""Printed passes: a laminate card per pass, four to an A4 sheet.

The card is A6 portrait (105 x 148 mm), the usual size of a backstage
laminate in a lanyard pouch, and A4 holds exactly four with no waste. A
credit-card size (CR80, 86 x 54 mm) was too small: its QR code could not
reach the size a door camera needs (below). Each card shows what a guard
looks at, largest first: the tier in large words on a band of the tier's
colour (colours are data, ``tier-colours.toml``; never the only cue, the
word is always printed), the holder's name, when the tier may enter, the
zones as short codes, the event and the serial; then the QR code.

The QR symbol is 72 mm wide whatever its version, with its 4-module quiet
zone kept white. Why 72 mm: a 640x480 door camera with a 62-66 degree
horizontal field of view sees 483-520 mm across at 40 cm (arm's length), so
1.23-1.33 pixels per mm. zxing-cpp reads sharp codes from about 2 pixels per
module and the gate's decoder upscales smaller ones; a typical pass (version
6, 41 modules) gets 1.76 mm modules, 2.2-2.3 pixels each at 40 cm and 3 at
30 cm. The test suite decodes every card of a rendered sheet after shrinking
it to what such a camera sees.

The page is a Jinja2 template (``templates/sheet.html``, autoescaped) fed with
plain data; the QR code is segno's SVG with a ``viewBox`` so it scales to the
size the CSS gives it, never clipped. Rendering to PDF is ``chromium.py``'s.
"""

from __future__ import annotations

import importlib.resources
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from ..core.policy import Policy, Tier
from ..core.schedule import Phase, phases_reached
from ..core.untrusted import parse_toml
from ..errors import IssueError, MalformedError
from ..words import plural
from .issuing import IssuedPass, qr_code

__all__ = [
    "CARDS_PER_PAGE",
    "CARD_MM",
    "QUIET_MODULES",
    "SYMBOL_MM",
    "Colours",
    "load_colours",
    "render_sheet",
    "zone_codes",
]

CARD_MM = (105.0, 148.5)  # A6 portrait; an A4 page holds 2 x 2
CARDS_PER_PAGE = 4
SYMBOL_MM = 72.0  # the QR symbol without its quiet zone
QUIET_MODULES = 4  # the quiet zone ISO/IEC 18004 asks for
MAX_COLOURS_BYTES = 64 * 1024
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class Colours:
    """Band colours: by tier id, and a palette for tiers not named."""

    tiers: Mapping[str, str]
    others: tuple[str, ...]

    def for_policy(self, policy: Policy) -> dict[str, str]:
        """One colour per tier of ``policy``; unnamed tiers take the palette in order."""
        out: dict[str, str] = {}
        spare = [c for c in self.others if c not in self.tiers.values()]
        for i, tier in enumerate(t for t in policy.tiers if t not in self.tiers):
            out[tier] = spare[i % len(spare)] if spare else "#555555"
        return {t: self.tiers.get(t) or out[t] for t in policy.tiers}


def load_colours(data: bytes | None = None, source: str = "colours") -> Colours:
    """The shipped tier colours, or those of a TOML file's bytes (same shape)."""
    if data is None:
        data = (importlib.resources.files(__package__) / "tier-colours.toml").read_bytes()
    try:
        doc = parse_toml(data, max_bytes=MAX_COLOURS_BYTES)
    except MalformedError as err:
        raise IssueError(f"{source} is {err}") from err
    tiers = doc.get("tiers", {})
    others = doc.get("others", {}).get("colours", []) if isinstance(doc.get("others"), dict) else []
    if not isinstance(tiers, dict) or not isinstance(others, list):
        raise IssueError(f"{source}: needs [tiers] tier = \"#rrggbb\" and [others] colours = [...]")
    for where, value in [*((f"tiers.{k}", v) for k, v in tiers.items()),
                         *((f"others.colours[{i}]", v) for i, v in enumerate(others))]:
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise IssueError(f"{source}: {where} = {value!r} is not a colour like \"#c62828\"")
    return Colours({k: v.lower() for k, v in tiers.items()}, tuple(c.lower() for c in others))


def _luminance(colour: str) -> float:
    def channel(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def ink_for(colour: str) -> str:
    """Black or white text, whichever contrasts more with ``colour`` (WCAG 2)."""
    lum = _luminance(colour)
    return "#000000" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#ffffff"


def zone_codes(zones: Sequence[str]) -> dict[str, str]:
    """Short codes for zones as printed on cards: the initials of a zone id's
    words (``green-room`` GR), or the first three letters of a one-word id
    (``stage`` STA). Codes that clash are lengthened, only those, letter by
    letter from the id (``green-room`` GRE, ``guest-room`` GUE)."""

    def candidates(zone: str) -> list[str]:
        words = [w for w in re.split(r"[-._]+", zone) if w] or [zone]
        flat = "".join(words)
        out = ["".join(w[0] for w in words)] if len(words) > 1 else []
        out += [flat[:n] for n in range(3, len(flat) + 1)] or [flat]
        return [c.upper() for c in dict.fromkeys(out)]

    options = {z: candidates(z) for z in zones}
    step = dict.fromkeys(zones, 0)
    while True:
        codes = {z: options[z][min(step[z], len(options[z]) - 1)] for z in zones}
        clashing = [z for z in zones if list(codes.values()).count(codes[z]) > 1]
        movable = [z for z in clashing if step[z] < len(options[z]) - 1]
        if not movable:
            return codes
        for z in movable:
            step[z] += 1


def _when(tier: Tier, policy: Policy, content: Any = None) -> str:
    """When a tier may enter, as printed: "before, during and after the show".
    With a pass's ``content``, only the phases its validity window reaches:
    a day pass valid after 21:00 says "after the show only"."""
    reached, photo = phases_reached(
        policy.days, getattr(content, "not_before", None), getattr(content, "not_after", None)
    )
    names = [p.value for p in Phase if tier.zones.get(p) and p in reached]
    if tier.photo_window and not tier.zones.get(Phase.DURING) and photo:
        minutes = int(policy.schedule.photo_window.total_seconds() // 60)
        names.insert(1 if "before" in names else 0, f"first {minutes} min of the show")
    if names == ["before", "during", "after"]:
        return "before, during and after the show"
    if not names:
        return ""
    text = " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]
    if names[-1] in ("before", "during", "after"):
        text += " the show"
    return text + (" only" if len(names) == 1 else "")


def _window(content: Any, policy: Policy) -> str:
    tz = ZoneInfo(policy.timezone)

    def fmt(t: datetime) -> str:
        return t.astimezone(tz).strftime("%a %d %b %H:%M")

    nb, na = content.not_before, content.not_after
    for number, day in enumerate(policy.days, 1):
        if len(policy.days) > 1 and nb == day.opens and na == day.curfew:  # a day pass
            return f"day {number} only: {fmt(nb)} to {fmt(na)}"
    if nb and na:
        return f"valid {fmt(nb)} to {fmt(na)}"
    if nb:
        return f"valid from {fmt(nb)}"
    if na:
        return f"valid until {fmt(na)}"
    return ""


def _event_days(policy: Policy) -> str:
    """The event's day as printed on a card, or its first and last show days."""
    tz = ZoneInfo(policy.timezone)
    first, last = policy.opens.astimezone(tz), policy.days[-1].opens.astimezone(tz)
    if first.date() == last.date():
        return first.strftime("%a %d %b %Y")
    return f"{first:%a %d %b} to {last:%a %d %b %Y}"


def _width_units(text: str) -> float:
    """How wide ``text`` prints, in average Latin letters: CJK and other wide
    characters take two, capitals and W/M a little more than one."""
    units = 0.0
    for ch in text:
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            units += 2.0
        elif ch in "WMwm@" or ch.isupper():
            units += 1.35
        else:
            units += 1.0
    return units


def _name_size(name: str) -> str:
    """A font size class for the holder's name on a 95 mm wide card: one line
    at the two larger sizes; the smallest wraps onto a second line when even a
    40-byte name of wide letters does not fit on one."""
    units = _width_units(name)
    return "l" if units <= 19 else "m" if units <= 26 else "s"


def _card(issued: IssuedPass, policy: Policy, colours: Mapping[str, str],
          codes: Mapping[str, str]) -> dict[str, Any]:
    c = issued.content
    tier = policy.tiers[c.tier]
    zones = list(c.zones) if c.zones else [z for z in policy.zones if z in tier.ever]
    code = qr_code(issued.text)
    modules = code.symbol_size(border=0)[0]
    module_mm = SYMBOL_MM / modules
    svg = code.svg_inline(
        scale=1, border=QUIET_MODULES, omitsize=True, dark="#000", light="#fff", svgclass="code"
    )
    band = colours[c.tier]
    all_zones = not c.zones and set(zones) == set(policy.zones)
    return {
        "serial": c.serial,
        "holder": c.holder or "",
        "name_size": _name_size(c.holder or ""),
        "tier": c.tier,
        "tier_word": tier.label,
        "tier_size": "l" if len(tier.label) <= 12 else "m" if len(tier.label) <= 18 else "s",
        "band": band,
        "ink": ink_for(band),
        "all_zones": all_zones,
        "zones": [codes[z] for z in zones],
        "zone_names": ", ".join(zones),
        "when": _when(tier, policy, c),
        "window": _window(c, policy),
        "zones_size": "s" if len(zones) > 8 and not all_zones else "",
        "event_size": "s" if _width_units(policy.name) > 44 else "",
        "qr_svg": Markup(svg),  # segno's own output: no text from outside inside
        "qr_mm": round(module_mm * (modules + 2 * QUIET_MODULES), 3),
        "module_mm": round(module_mm, 3),
        "version": code.designator,
    }


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("scanner.organizer", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_sheet(
    passes: Sequence[IssuedPass],
    policy: Policy,
    colours: Colours | None = None,
    *,
    key_page: bool = True,
) -> str:
    """The printable page for ``passes``: A4 pages of four A6 cards, then
    (unless ``key_page`` is False, as for one reissued card) a key of tier
    colours and zone codes for the guards' briefing."""
    table = (colours or load_colours()).for_policy(policy)
    codes = zone_codes(policy.zones)
    cards = [_card(p, policy, table, codes) for p in passes]
    pages = [cards[i : i + CARDS_PER_PAGE] for i in range(0, len(cards), CARDS_PER_PAGE)]
    legend_tiers = [
        {
            "word": t.label,
            "id": t.id,
            "band": table[t.id],
            "ink": ink_for(table[t.id]),
            "when": _when(t, policy),
            "zones": "named on each pass" if t.requires_zones
            else " ".join(codes[z] for z in policy.zones if z in t.ever),
        }
        for t in policy.tiers.values()
    ]
    count = plural(len(cards), "pass")
    return _ENV.get_template("sheet.html").render(
        event_name=policy.name,
        event_day=_event_days(policy),
        event=policy.event,
        count=count,
        pages=pages,
        card_mm=CARD_MM,
        legend_tiers=legend_tiers,
        legend_zones=[{"code": codes[z], "zone": z} for z in policy.zones],
        key_page=key_page,
    )
