"""The organizer's journey, end to end, through the scanner CLI and real files.

An organizer makes keys, writes a policy in local times, issues 30 crew
passes from a CSV and prints them; a browser (headless Chromium) renders the
sheet and the PDF as a printer would, and the gate's own decoder must read
every QR code on them back to its exact pass text, also after shrinking a
card to what a 640x480 door camera sees at arm's length. Then a pass is lost
and revoked by name, another is reissued, the revocation list is signed and
checked as a gate would, and the same batch run again changes nothing.
"""

from __future__ import annotations

import html
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.gate.decoders import open_decoder
from scanner.organizer.cards import CARD_MM
from scanner.organizer.chromium import screenshot

from ..conftest import EXAMPLE_POLICY

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("pdftoppm") is None,
    reason="needs headless Chromium and poppler's pdftoppm (scripts/bootstrap test)",
)

DPI = 300
CSS_PX_PER_MM = 96 / 25.4  # a CSS pixel is 1/96 inch
PAGE_MM = (210.0, 297.0)
SCREEN_GAP_PX = 8  # the sheet's screen layout: pages 8 px apart, 8 px from the edge
# A 640x480 camera with a 66 degree field of view sees 520 mm across at 40 cm.
CAMERA_PX_PER_MM = 640 / 520
CAMERA_BLUR_PX = 0.6
AT_BEFORE = "2026-12-05T17:00"  # local time, before the show

CREW_CSV = "\n".join(
    [
        "holder,tier,zones,not_before,not_after",
        "Ana García,aaa,,,",
        "Zoë Ångström,vip,,,",
        "Marta Kowalska,working,,,",
        "Tom O'Neill,working,,,",
        "Дмитрий Иванов,working,,,",
        "Lena Vogel,local-crew,,,",
        "Jonas Berg,local-crew,,,",
        ",local-crew,,,",
        ",local-crew,,,",
        "Kai Müller,staff,catering merch,,",
        "Priya Shah,staff,catering,,",
        "Sam Lee,photo,,,",
        "Nguyễn Văn An,working,,2026-12-05T08:00,2026-12-05T18:00",
        "Mia Rossi,after-show,,,",
        "Olu Adeyemi,meet-greet,,,",
        *(f"Rigger {n:02d},working,,," for n in range(1, 16)),
    ]
)


def scanner(*args: object, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def decode_pages(pages: list[np.ndarray]) -> list[str]:
    """Every QR text the gate's decoder reads, page by page."""
    texts: list[str] = []
    with open_decoder("auto") as decoder:
        for page in pages:
            texts += decoder.decode(page)
    return texts


def screen_pages(png: Path, count: int, per_row: int, scale: float) -> list[np.ndarray]:
    """The pages of a screenshot of the sheet, cut out by the sheet's screen layout."""
    shot = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    w, h = (round(mm * CSS_PX_PER_MM * scale) for mm in PAGE_MM)
    gap = round(SCREEN_GAP_PX * scale)
    out = []
    for i in range(count):
        row, col = divmod(i, per_row)
        x, y = gap + col * (w + gap), gap + row * (h + gap)
        out.append(shot[y : y + h, x : x + w])
    return out


def as_the_door_camera_sees(card: np.ndarray, dpi: int) -> np.ndarray:
    """A card photographed by a 640x480 camera at 40 cm: shrunk, softened, framed."""
    f = CAMERA_PX_PER_MM / (dpi / 25.4)
    small = cv2.resize(card, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640), 120, np.uint8)
    h, w = small.shape
    top, left = (480 - h) // 2, (640 - w) // 2
    frame[top : top + h, left : left + w] = small
    return cv2.GaussianBlur(frame, (0, 0), CAMERA_BLUR_PX)


def ledger_state(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT serial, holder, tier, zones, text, revoked_at, replaced_by "
            "FROM passes ORDER BY serial"
        ).fetchall()


def test_an_organizer_prints_30_crew_passes_that_scan_and_revokes_and_reissues(
    tmp_path, monkeypatch
):
    desk = tmp_path
    key, pub = desk / "keys/organizer.key", desk / "keys/organizer.pub"
    policy = desk / "event.policy"
    out, ledger = desk / "passes", desk / "example-fest-2026.issued.db"

    # 1. keys (the signing key under a passphrase, given as a script gives it), and a
    #    policy written in local times (no offsets)
    monkeypatch.setenv("SCANNER_KEY_PASSPHRASE", "four unrelated words here")
    scanner("keygen", "--out", desk / "keys", "--passphrase")
    assert b"PRIVATE KEY" not in key.read_bytes()
    local = EXAMPLE_POLICY.read_text().replace("+01:00", "")
    assert "T20:00:00\n" in local
    (desk / "event.toml").write_text(local)
    scanner("policy", "sign", desk / "event.toml", "--key", key, "-o", policy)
    shown = scanner("policy", "show", policy, "--trust", pub)
    assert "show     Sat 2026-12-05 20:00" in shown.output

    # 2. a batch of 30 crew from a CSV, printed to PDF by headless Chromium
    (desk / "crew.csv").write_text(CREW_CSV + "\n", encoding="utf-8")
    first = scanner("issue", "--key", key, "--policy", policy, "--batch", desk / "crew.csv",
                    "--out", out, "--pdf")
    assert "30 passes: 30 new" in first.output
    issued = {row[4]: row for row in ledger_state(ledger)}
    assert len(issued) == 30

    # 3. the PDF, rasterized at 300 dpi: every code reads back to its own pass
    subprocess.run(["pdftoppm", "-r", str(DPI), "-png", out / "sheet.pdf", desk / "page"],
                   check=True, capture_output=True)
    pdf_pages = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(desk.glob("page-*.png"))]
    assert len(pdf_pages) == 8 + 1  # 30 cards, four to a page, then the key for the guards
    from_pdf = decode_pages(pdf_pages)
    assert sorted(from_pdf) == sorted(issued)

    # 4. the sheet as a browser shows it, at print size: the same. 192 dpi (2 device
    # pixels per CSS pixel), as headless Chromium stops painting a screenshot
    # beyond about 50 megapixels, and nine A4 pages at 300 dpi are 80.
    shot, per_row, scale = desk / "sheet.png", 3, 2.0
    width = per_row * (round(PAGE_MM[0] * CSS_PX_PER_MM) + SCREEN_GAP_PX) + SCREEN_GAP_PX
    height = 3 * (round(PAGE_MM[1] * CSS_PX_PER_MM) + SCREEN_GAP_PX) + SCREEN_GAP_PX
    screenshot(out / "sheet.html", shot, width=width, height=height, scale=scale)
    from_screen = decode_pages(screen_pages(shot, 8, per_row, scale))
    assert sorted(from_screen) == sorted(issued)

    # 5. each card as a 640x480 door camera sees it at 40 cm
    card_px = [round(mm / 25.4 * DPI) for mm in CARD_MM]
    read = []
    with open_decoder("auto") as decoder:
        for page in pdf_pages[:8]:
            for row in range(2):
                for col in range(2):
                    card = page[row * card_px[1] : (row + 1) * card_px[1],
                                col * card_px[0] : (col + 1) * card_px[0]]
                    if card.min() > 200:
                        continue  # the empty places on the last page
                    read += decoder.decode(as_the_door_camera_sees(card, DPI))
    assert sorted(read) == sorted(issued)

    # 6. the same batch again changes nothing: same serials, same files
    sheet, before = (out / "sheet.html").read_bytes(), ledger_state(ledger)
    images = sorted(p.name for p in out.glob("*.png"))
    again = scanner("issue", "--key", key, "--policy", policy, "--batch", desk / "crew.csv",
                    "--out", out)
    assert "30 passes: 30 unchanged" in again.output
    assert ledger_state(ledger) == before
    assert (out / "sheet.html").read_bytes() == sheet
    assert sorted(p.name for p in out.glob("*.png")) == images
    assert not (out / "sheet.pdf").exists()  # not asked for this time: no stale PDF

    # 7. Tom lost his pass: revoke it by name, and the gates refuse it
    by_name = {row[1]: row for row in before}
    tom, zoe = by_name["Tom O'Neill"], by_name["Zoë Ångström"]
    scanner("passes", "revoke", "tom o'neill", "--policy", policy, "--reason", "lost")
    scanner("update", "revocations", "--key", key, "--policy", policy,
            "-o", desk / "revocations.signed")

    def check(text: str, zone: str = "backstage"):
        result = scanner("check", "--policy", policy, "--trust", pub, "--revocations",
                         desk / "revocations.signed", "--zone", zone, "--at", AT_BEFORE, text,
                         ok=False)
        return json.loads(result.stdout)

    assert check(tom[4])["reason"] == "revoked"
    assert check(by_name["Marta Kowalska"][4])["granted"]

    # 8. Zoë's laminate was stolen: one step revokes it and prints her new card
    cards = desk / "cards"
    reissued = scanner("passes", "reissue", "ZOË", "--key", key, "--policy", policy,
                       "--reason", "stolen", "--out", cards)
    new_serial = max(row[0] for row in before) + 1
    assert f"issued {new_serial} to Zoë Ångström" in reissued.output
    scanner("update", "revocations", "--key", key, "--policy", policy,
            "-o", desk / "revocations.signed")
    (new_text,) = decode_pages([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                                for p in cards.glob("*.png")])
    assert check(zoe[4])["reason"] == "revoked" and check(tom[4])["reason"] == "revoked"
    granted = check(new_text, "green-room")
    assert granted["granted"] and granted["holder"] == "Zoë Ångström"
    assert granted["serial"] == new_serial

    # 9. the batch once more: Zoë's new pass is hers, Tom's stays revoked, nothing is issued
    after_desk = ledger_state(ledger)
    last = scanner("issue", "--key", key, "--policy", policy, "--batch", desk / "crew.csv",
                   "--out", out)
    assert "30 passes: 29 unchanged, 1 revoked" in last.output
    assert ledger_state(ledger) == after_desk
    listing = (out / "passes.csv").read_text(encoding="utf-8")
    assert f"{new_serial},Zoë Ångström,vip" in listing
    printed = sorted(p.name for p in out.glob("*.png"))
    assert len(printed) == 29 and not any("tom" in name for name in printed)


# What Chromium measures on each card of a rendered sheet: every text's box,
# whether its content overflows the box, and the boxes that must not overlap.
MEASURE_CARDS = """
<script>
const found = [];
for (const card of document.querySelectorAll('section.card')) {
  const c = card.getBoundingClientRect();
  const boxes = [...card.querySelectorAll(
    '.top .event, .top .serial, .band, .holder, .info, .zones, .qr > div')];
  const texts = [...card.querySelectorAll(
    '.top .event, .top .serial, .band, .holder, .info, .zones span')];
  const rect = (el) => el.getBoundingClientRect();
  const problems = [];
  for (const el of texts) {
    const r = rect(el);
    const what = el.className + ' "' + el.textContent.trim() + '"';
    if (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1)
      problems.push('overflows its box: ' + what);
    if (r.left < c.left - 0.5 || r.right > c.right + 0.5 || r.top < c.top - 0.5
        || r.bottom > c.bottom + 0.5)
      problems.push('leaves the card: ' + what);
  }
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const a = rect(boxes[i]), b = rect(boxes[j]);
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 0.5 && h > 0.5)
        problems.push('overlaps: ' + boxes[i].className + ' / ' + boxes[j].className);
    }
  found.push({serial: card.dataset.serial, problems: problems,
              texts: texts.map((el) => el.textContent.trim())});
}
const pre = document.createElement('pre');
pre.id = 'measured';
pre.textContent = JSON.stringify(found);
document.body.appendChild(pre);
</script>
"""


def measured_cards(sheet: Path, tmp_path: Path) -> list[dict]:
    """The sheet as headless Chromium lays it out, measured card by card."""
    from scanner.organizer.chromium import find_chromium

    page = tmp_path / "measure.html"
    page.write_text(sheet.read_text().replace("</body>", MEASURE_CARDS + "</body>"))
    done = subprocess.run(
        [find_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True)
    start = done.stdout.index('<pre id="measured">') + len('<pre id="measured">')
    return json.loads(html.unescape(done.stdout[start : done.stdout.index("</pre>", start)]))


def test_the_longest_names_windows_and_zone_lists_print_in_full_on_every_card(tmp_path):
    """Nothing on a card is cut: a 40-byte name of the widest letters, a name in
    CJK, a day pass's whole window, nine and ten zone codes, a long event name."""
    key = tmp_path / "keys/organizer.key"
    scanner("keygen", "--out", tmp_path / "keys")
    long_name = "Example Fest 2026, Main Stage and the Riverside Tent at the Old Harbour"
    toml = EXAMPLE_POLICY.read_text().replace('"Example Fest 2026, Main Stage"', f'"{long_name}"')
    (tmp_path / "event.toml").write_text(toml)
    policy = tmp_path / "event.policy"
    scanner("policy", "sign", tmp_path / "event.toml", "--key", key, "-o", policy)
    every_zone = ("stage backstage green-room dressing-rooms production-office photo-pit "
                  "meet-greet-room catering loading-dock merch")
    (tmp_path / "crew.csv").write_text("\n".join([
        "holder,tier,zones,not_before,not_after",
        f"{'W' * 40},working,,2026-12-05T08:00,2026-12-06T00:59",
        f"{'龍' * 13},vip,,,",
        "Maximiliane Wolfeschlegelsteinhausen-Be,staff,catering merch,,",
        f"Zoë Ångström-Wolfeschlegelsteinhausen,staff,{every_zone},"
        "2026-12-05T08:00,2026-12-05T23:59",
        "Lena Vogel,local-crew,,2026-12-05T23:30,2026-12-06T00:59",
        ",photo,,,",
    ]) + "\n", encoding="utf-8")
    out = tmp_path / "passes"
    scanner("issue", "--key", key, "--policy", policy, "--batch", tmp_path / "crew.csv",
            "--out", out)

    cards = measured_cards(out / "sheet.html", tmp_path)

    assert len(cards) == 6
    assert [c["problems"] for c in cards] == [[]] * 6, cards
    texts = {c["serial"]: c["texts"] for c in cards}
    # the day pass's window prints to its last minute, the event's name and day in full
    assert "valid Sat 05 Dec 08:00 to Sun 06 Dec 00:59" in texts["1"]
    assert f"{long_name} · Sat 05 Dec 2026" in texts["1"]
    assert "W" * 40 in texts["1"] and "龍" * 13 in texts["2"]
    assert "valid Sat 05 Dec 08:00 to Sat 05 Dec 23:59" in texts["4"]
    assert len([t for t in texts["4"] if len(t) <= 3 and t.isupper()]) == 10  # ten zone codes
    # a local-crew pass valid only from 23:30 says so: after the show, not "before and after"
    assert "after the show only" in texts["5"]
