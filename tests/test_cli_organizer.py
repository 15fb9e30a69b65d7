"""The organizer's commands, run as a person would run them: keygen, policy
sign and show, issue (single and batch), check with its exit codes, the pass
desk (list, show, revoke, reissue) and the signed revocation list."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import zxingcpp
from click.testing import CliRunner

from scanner.cli import cli
from scanner.core.decision import Gate, decide
from scanner.gate.frames import read_image
from scanner.organizer.ledger import Ledger

from .conftest import EXAMPLE_POLICY
from .test_access_table import MOMENTS

AT_BEFORE = MOMENTS["before"].isoformat()


def decode_png(path) -> list[str]:
    """What a bare zxing-cpp reads from an image file."""
    return [r.text for r in zxingcpp.read_barcodes(read_image(path))]


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def issue(organizer, *args, ok: bool = True):
    """scanner issue with the organizer's key and signed policy."""
    return run(
        "issue",
        "--key",
        organizer / "keys/organizer.key",
        "--policy",
        organizer / "event.policy",
        *args,
        ok=ok,
    )


@pytest.fixture
def organizer(tmp_path):
    """An organizer's folder: a key pair and the example policy signed."""
    run("keygen", "--out", tmp_path / "keys")
    run(
        "policy",
        "sign",
        EXAMPLE_POLICY,
        "--key",
        tmp_path / "keys/organizer.key",
        "-o",
        tmp_path / "event.policy",
    )
    return tmp_path


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path):
    result = run("keygen", "--out", tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / "organizer.key").st_mode)
    assert mode == 0o600
    assert (tmp_path / "organizer.pub").read_text().startswith("ed25519:")
    assert "never copy it to a gate" in result.output


def test_keygen_never_overwrites_a_key_without_force(tmp_path):
    run("keygen", "--out", tmp_path)
    before = (tmp_path / "organizer.key").read_bytes()
    result = run("keygen", "--out", tmp_path, ok=False)
    assert result.exit_code == 1
    assert "--force" in result.output
    assert (tmp_path / "organizer.key").read_bytes() == before
    run("keygen", "--out", tmp_path, "--force")
    assert (tmp_path / "organizer.key").read_bytes() != before


PASSPHRASE = "correct horse battery staple"


def test_a_key_kept_under_a_passphrase_signs_only_with_it(tmp_path, monkeypatch):
    """A thief with the laptop's key file but not its passphrase signs nothing."""
    from scanner.cli import base
    from scanner.keyfiles import PASSPHRASE_ENV

    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    made = run("keygen", "--out", tmp_path / "keys", "--passphrase")
    assert "under your passphrase" in made.output
    key = tmp_path / "keys/organizer.key"
    data = key.read_bytes()
    assert data.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    assert b"PRIVATE KEY" not in data and stat.S_IMODE(key.stat().st_mode) == 0o600
    policy = tmp_path / "event.policy"
    run("policy", "sign", EXAMPLE_POLICY, "--key", key, "-o", policy)
    shown = run("policy", "show", policy, "--trust", tmp_path / "keys/organizer.pub")
    assert "example-fest-2026" in shown.output  # signed by that very key

    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery stapler")
    wrong = run("issue", "--key", key, "--policy", policy, "--tier", "vip", "--out",
                tmp_path / "out", ok=False)  # fmt: skip
    assert wrong.exit_code == 2 and "wrong passphrase" in wrong.output
    monkeypatch.delenv(PASSPHRASE_ENV)
    none = run("issue", "--key", key, "--policy", policy, "--tier", "vip", "--out",
               tmp_path / "out", ok=False)  # fmt: skip
    assert none.exit_code == 2 and PASSPHRASE_ENV in none.output
    assert "Traceback" not in wrong.output + none.output
    assert not (tmp_path / "out").exists()  # nothing issued

    monkeypatch.setattr(base, "can_ask", lambda: True)  # someone at a terminal
    asked = CliRunner().invoke(
        cli, ["policy", "sign", str(EXAMPLE_POLICY), "--key", str(key), "-o",
              str(tmp_path / "again.policy")], input=PASSPHRASE + "\n",
    )  # fmt: skip
    assert asked.exit_code == 0, asked.output
    assert f"passphrase for {key}" in asked.output and PASSPHRASE not in asked.output


def test_keygen_at_a_terminal_asks_twice_and_a_damaged_key_file_is_named(tmp_path, monkeypatch):
    from scanner.cli import base
    from scanner.keyfiles import PASSPHRASE_ENV

    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(base, "can_ask", lambda: True)
    made = CliRunner().invoke(
        cli, ["keygen", "--out", str(tmp_path), "--passphrase"],
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert made.output.count("passphrase for") == 1 and "Repeat for confirmation" in made.output
    key = tmp_path / "organizer.key"
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    run("policy", "sign", EXAMPLE_POLICY, "--key", key, "-o", tmp_path / "event.policy")

    key.write_bytes(key.read_bytes()[:120])  # cut short: a bad copy off a backup
    cut = run("policy", "sign", EXAMPLE_POLICY, "--key", key, "-o", tmp_path / "again.policy",
              ok=False)  # fmt: skip
    assert cut.exit_code == 2 and "damaged" in cut.output and "Traceback" not in cut.output
    assert not (tmp_path / "again.policy").exists()


def test_a_short_passphrase_is_refused_and_no_key_is_written(tmp_path, monkeypatch):
    from scanner.keyfiles import PASSPHRASE_ENV

    monkeypatch.setenv(PASSPHRASE_ENV, "hunter2")
    result = run("keygen", "--out", tmp_path, "--passphrase", ok=False)
    assert result.exit_code == 2 and "at least 12" in result.output
    assert not list(tmp_path.iterdir())


def test_keygen_without_a_terminal_says_the_new_key_would_be_kept_under_a_passphrase(
    tmp_path, monkeypatch
):
    from scanner.keyfiles import PASSPHRASE_ENV

    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    result = run("keygen", "--out", tmp_path, "--passphrase", ok=False)
    assert result.exit_code == 2
    assert "a new key at" in result.output and "is to be kept under a passphrase" in result.output
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("passphrase", "reason", "kind"),
    [
        ("aaaaaaaaaaaa", 'Repeats like "aaa" are easy to guess', ()),
        (" " * 12, 'Repeats like "aaa" are easy to guess', ()),
        ("password1234", "This is a very common password", ()),  # found by a 5-word list
        ("Password1234!", "similar to a commonly used password", ()),
        ("password1234", "This is a very common password", ("--manager",)),
    ],
)
def test_a_guessable_passphrase_is_refused_with_the_reason_and_no_key_is_written(
    tmp_path, monkeypatch, passphrase, reason, kind
):
    """12 characters are not enough: a copied key is guessed offline, so a
    passphrase a dictionary finds is refused, saying why and what to do."""
    from scanner.keyfiles import PASSPHRASE_ENV

    monkeypatch.setenv(PASSPHRASE_ENV, passphrase)
    result = run("keygen", *kind, "--out", tmp_path / "keys", "--passphrase", ok=False)
    assert result.exit_code == 2, result.output
    assert "the passphrase is too easy to guess" in result.output and reason in result.output
    assert "Add another word or two" in result.output  # and what to do instead
    assert "Traceback" not in result.output
    assert not (tmp_path / "keys").exists() or not list((tmp_path / "keys").iterdir())


def test_four_or_five_unrelated_words_make_a_passphrase_keygen_takes(tmp_path, monkeypatch):
    from scanner.keyfiles import PASSPHRASE_ENV

    for words, kind in (
        ("correct horse battery staple ocean", ()),
        ("velvet hammock tundra orbit", ("--manager",)),
    ):
        monkeypatch.setenv(PASSPHRASE_ENV, words)
        made = run("keygen", *kind, "--out", tmp_path / "keys", "--passphrase")
        assert "under your passphrase" in made.output
    key = tmp_path / "keys/organizer.key"
    assert key.read_bytes().startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple ocean")
    run("policy", "sign", EXAMPLE_POLICY, "--key", key, "-o", tmp_path / "event.policy")


def test_the_browser_that_prints_the_sheet_never_sees_the_keys_passphrase(
    tmp_path, monkeypatch
):
    """issue --pdf with the key's passphrase in SCANNER_KEY_PASSPHRASE, as a
    script gives it: the browser started to print the sheet (a stand-in named
    chromium, first on the PATH, that records its environment) is not given it."""
    from scanner.keyfiles import PASSPHRASE_ENV

    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    run("keygen", "--out", tmp_path / "keys", "--passphrase")
    key = tmp_path / "keys/organizer.key"
    run("policy", "sign", EXAMPLE_POLICY, "--key", key, "-o", tmp_path / "event.policy")
    browser = tmp_path / "bin/chromium"
    browser.parent.mkdir()
    browser.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "pdf = next(a.split('=', 1)[1] for a in sys.argv if a.startswith('--print-to-pdf='))\n"
        "open(pdf, 'wb').write(b'%PDF-1.4 stand-in')\n"
        "seen = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seen.json')\n"
        "open(seen, 'w').write(json.dumps(dict(os.environ)))\n"
    )
    browser.chmod(0o755)
    monkeypatch.setenv("PATH", f"{browser.parent}{os.pathsep}{os.environ['PATH']}")
    batch = tmp_path / "crew.csv"
    write_csv(batch, ["Ann Lee,vip,,,"])
    run("issue", "--key", key, "--policy", tmp_path / "event.policy", "--batch", batch,
        "--out", tmp_path / "passes", "--pdf")  # fmt: skip
    assert (tmp_path / "passes/sheet.pdf").read_bytes() == b"%PDF-1.4 stand-in"
    seen = json.loads((browser.parent / "seen.json").read_text())
    assert PASSPHRASE_ENV not in seen and PASSPHRASE not in seen.values()
    assert seen["PATH"] == os.environ["PATH"]  # the rest of the environment is kept


def test_a_private_key_readable_by_others_is_refused(organizer):
    key = organizer / "keys/organizer.key"
    key.chmod(0o644)
    result = run(
        "issue", "--key", key, "--policy", organizer / "event.policy", "--tier", "vip", ok=False
    )
    assert result.exit_code == 2  # an unsafe input file is invalid input
    assert "chmod 600" in result.output


def test_policy_sign_reports_a_mistake_by_key_without_a_traceback(organizer, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE_POLICY.read_text().replace('"!dressing-rooms"', '"!dresing-rooms"'))
    result = run(
        "policy",
        "sign",
        bad,
        "--key",
        organizer / "keys/organizer.key",
        "-o",
        tmp_path / "bad.policy",
        ok=False,
    )
    assert result.exit_code == 2
    assert "tiers.working.before: unknown zone 'dresing-rooms'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "bad.policy").exists()


def test_policy_show_prints_the_access_table(organizer):
    result = run(
        "policy", "show", organizer / "event.policy", "--trust", organizer / "keys/organizer.pub"
    )
    assert "example-fest-2026" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("local-crew"))
    assert line.split()[1:4] == ["BA", "BA", "-"]


def test_issue_prints_the_qr_text_and_writes_images_that_decode_to_it(organizer):
    png, svg = organizer / "jane.png", organizer / "jane.svg"
    result = issue(
        organizer,
        "--tier",
        "vip",
        "--holder",
        "Jane Doe",
        "--png",
        png,
        "--svg",
        svg,
    )
    text = result.stdout.strip()
    assert text.startswith("BP1:")
    assert "<svg" in svg.read_text()
    assert decode_png(png) == [text]


def test_issue_refuses_a_tier_or_zone_the_policy_does_not_define(organizer):
    result = issue(organizer, "--tier", "roadie", ok=False)
    assert result.exit_code == 2 and "tier 'roadie' is not in the policy" in result.output
    result = issue(organizer, "--tier", "staff", "--zones", "catering,kitchen", ok=False)
    assert result.exit_code == 2 and "zone 'kitchen' is not in the policy" in result.output


def test_issue_with_a_key_the_policy_does_not_trust_is_refused(organizer, tmp_path):
    run("keygen", "--out", tmp_path / "other")
    result = run(
        "issue",
        "--key",
        tmp_path / "other/organizer.key",
        "--policy",
        organizer / "event.policy",
        "--tier",
        "vip",
        ok=False,
    )
    assert "not trusted" in result.output


def test_serials_never_collide_across_single_and_batch_issues(organizer):
    issue(organizer, "--tier", "vip", "--serial", "5")
    result = issue(organizer, "--tier", "vip", "--serial", "5", ok=False)
    assert "serial 5 was already issued" in result.output
    csv = organizer / "guests.csv"
    csv.write_text(
        'holder,tier,zones,serial\nAnn,vip,,\nBen,staff,"catering, merch",\n'
        "Cy,photo,,3\nDee,aaa,,\n"
    )
    issue(organizer, "--batch", csv, "--out", organizer / "passes")
    with Ledger(organizer / "example-fest-2026.issued.db", "example-fest-2026") as ledger:
        serials = sorted(ledger.used())
    assert serials == [1, 2, 3, 4, 5]  # the lowest free serials, around 3 and 5
    images = sorted(p.name for p in (organizer / "passes").glob("*.png"))
    assert images == ["000001-ann.png", "000002-ben.png", "000003-cy.png", "000004-dee.png"]
    sheet = (organizer / "passes/sheet.html").read_text()
    assert sheet.count("<svg") == 4 and "Ben" in sheet and "Staff" in sheet


def test_a_batch_with_one_bad_row_writes_nothing(organizer):
    csv = organizer / "guests.csv"
    csv.write_text("holder,tier\nAnn,vip\nBen,roadie\n")
    result = issue(
        organizer,
        "--batch",
        csv,
        "--out",
        organizer / "passes",
        ok=False,
    )
    assert result.exit_code == 2
    assert "line 3" in result.output and "roadie" in result.output
    assert not (organizer / "passes").exists()


def test_batch_passes_decide_like_single_ones(organizer, policy):
    csv = organizer / "crew.csv"
    csv.write_text("holder,tier\nLee,local-crew\n")
    issue(
        organizer,
        "--batch",
        csv,
        "--out",
        organizer / "passes",
    )
    (png,) = (organizer / "passes").glob("*.png")
    (text,) = decode_png(png)
    result = run(
        "check", "--policy", organizer / "event.policy", "--zone", "stage", "--at", AT_BEFORE, text
    )
    assert json.loads(result.stdout)["holder"] == "Lee"


class TestCheck:
    @pytest.fixture
    def crew_pass(self, organizer):
        result = issue(
            organizer,
            "--tier",
            "local-crew",
            "--holder",
            "Bob",
            "--png",
            organizer / "bob.png",
        )
        return result.stdout.strip()

    def check(self, organizer, *args, ok=False):
        return run(
            "check",
            "--policy",
            organizer / "event.policy",
            "--trust",
            organizer / "keys/organizer.pub",
            *args,
            ok=ok,
        )

    def test_granted_exits_0_with_the_decision_as_json(self, organizer, crew_pass):
        result = self.check(organizer, "--zone", "stage", "--at", AT_BEFORE, crew_pass, ok=True)
        decision = json.loads(result.stdout)
        assert decision["granted"] is True and decision["reason"] == "ok"
        assert {"granted", "reason", "tier", "serial", "zone", "phase", "message"} <= set(decision)

    def test_denied_exits_1(self, organizer, crew_pass):
        result = self.check(
            organizer, "--zone", "stage", "--at", MOMENTS["during"].isoformat(), crew_pass
        )
        assert result.exit_code == 1
        assert json.loads(result.stdout)["reason"] == "phase_not_allowed"

    def test_an_image_is_read_like_the_text(self, organizer, crew_pass):
        result = self.check(
            organizer,
            "--zone",
            "stage",
            "--at",
            AT_BEFORE,
            "--image",
            organizer / "bob.png",
            ok=True,
        )
        assert json.loads(result.stdout)["holder"] == "Bob"

    def test_a_photo_of_two_passes_is_refused_not_read_as_either(
        self, organizer, crew_pass, tmp_path
    ):
        import cv2
        import numpy as np

        from scanner.tools.synthetic import code_image

        # the crew pass's own code is the smaller symbol: zxing-cpp meets it first
        ours, other = code_image(crew_pass, 3), code_image(crew_pass + "-and-more" * 12, 3)
        photo = np.full((600, 900), 230, np.uint8)
        photo[20:20 + ours.shape[0], 20:20 + ours.shape[1]] = ours
        photo[200:200 + other.shape[0], 450:450 + other.shape[1]] = other
        cv2.imwrite(str(tmp_path / "two.png"), photo)
        result = self.check(organizer, "--zone", "stage", "--at", AT_BEFORE,
                            "--image", tmp_path / "two.png")
        assert result.exit_code == 2
        assert "holds 2 QR codes; show one pass at a time" in result.output

    def test_a_time_without_offset_is_read_in_the_event_time_zone(self, organizer, crew_pass):
        # 19:59 in Berlin is before the show; 20:00 is the show start.
        assert (
            self.check(
                organizer, "--zone", "stage", "--at", "2026-12-05T19:59", crew_pass
            ).exit_code
            == 0
        )
        assert (
            self.check(
                organizer, "--zone", "stage", "--at", "2026-12-05T20:00", crew_pass
            ).exit_code
            == 1
        )

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--zone", "kitchen", "BP1:X"), "zone 'kitchen' is not in the policy"),
            (("--zone", "stage"), "give QR_TEXT (or - for standard input), --image"),
            (("--zone", "stage", "--at", "soon", "BP1:X"), "is not a time"),
            (("--zone", "stage", "--image", "/nonexistent.png"), "does not exist"),
        ],
    )
    def test_usage_errors_exit_2_with_a_message(self, organizer, args, message):
        result = self.check(organizer, *args)
        assert result.exit_code == 2
        assert message in result.output

    def test_a_policy_signed_by_someone_else_is_a_usage_error(self, organizer, tmp_path):
        run("keygen", "--out", tmp_path / "other")
        result = run(
            "check",
            "--policy",
            organizer / "event.policy",
            "--trust",
            tmp_path / "other/organizer.pub",
            "--zone",
            "stage",
            "BP1:X",
            ok=False,
        )
        assert result.exit_code == 2 and "not trusted" in result.output


def test_check_agrees_with_the_library(organizer, policy, make_pass):
    # the CLI is a thin shell: the same pass, the same answer
    text = make_pass("vip", 77)
    lib = decide(text, policy, Gate(zone="green-room"), MOMENTS["after"])
    assert lib.granted


# -- invalid input: exit 2, every mistake at once, nothing issued -----------------


def ledger_rows(organizer) -> list:
    path = organizer / "example-fest-2026.issued.db"
    if not path.exists():
        return []
    with Ledger(path, "example-fest-2026") as ledger:
        return ledger.passes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tier", "staff", "--zones", "unknown"), "zone 'unknown' is not in the policy"),
        (("--tier", "vip", "--not-after", "9pm"), "--not-after: '9pm' is not a time"),
        # a wall-clock time the event's zone skips or lives twice is never shifted silently
        (("--tier", "vip", "--not-after", "2026-03-29T02:30"),
         "2026-03-29T02:30:00 does not exist in Europe/Berlin (clocks go forward)"),
        (("--tier", "vip", "--not-before", "2026-10-25T02:30"),
         "happens twice in Europe/Berlin (clocks go back); give the offset you mean "
         "(2026-10-25T02:30:00+02:00 or 2026-10-25T02:30:00+01:00)"),
        # a day pass for a day the event does not have would never open a door
        (("--tier", "working", "--not-before", "2026-12-07T09:00", "--not-after",
          "2026-12-07T17:00"),
         "not-before Mon 07 Dec 09:00 is after the event's curfew: the event runs from "
         "Sat 05 Dec 08:00 to Sun 06 Dec 01:00; this pass would never open a door"),
        (("--tier", "working", "--not-after", "2026-12-04T17:00"),
         "not-after Fri 04 Dec 17:00 is before the event opens"),
        # local crew work before and after the show: a pass for the show's hours only
        (("--tier", "local-crew", "--not-before", "2026-12-05T20:15", "--not-after",
          "2026-12-05T22:45"),
         "tier 'local-crew' opens doors only before and after (the show: Sat 05 Dec 20:00 to "
         "Sat 05 Dec 23:00), and this window reaches none of that; this pass would never "
         "open a door"),
        (("--tier", "vip", "--holder", "Jane\u200bDoe"), "U+200B) is not allowed in a name"),
        (("--tier", "vip", "--holder", "x" * 41), "at most 40 fit"),
        (("--tier", "vip", "--pdf"), "go with --batch"),
    ],
)
def test_invalid_single_pass_input_exits_2_and_issues_nothing(organizer, args, message):
    result = issue(organizer, *args, ok=False)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert ledger_rows(organizer) == []


def test_a_window_partly_outside_the_event_is_issued_with_a_warning_naming_the_dead_time(
    organizer,
):
    result = issue(organizer, "--tier", "working", "--holder", "Ann", "--not-before",
                   "2026-12-05T06:00", "--not-after", "2026-12-06T09:00")
    assert "warning: valid from Sat 05 Dec 06:00, but the event runs from Sat 05 Dec 08:00 " \
        "to Sun 06 Dec 01:00: no door opens to it before the event opens" in result.output
    assert "warning: valid until Sun 06 Dec 09:00" in result.output
    assert "after the curfew" in result.output
    assert [p.holder for p in ledger_rows(organizer)] == ["Ann"]

    batch = organizer / "day.csv"
    batch.write_text("holder,tier,not_before,not_after\nBen,working,,\n"
                     "Cy,working,2026-12-05T12:00,2026-12-06T09:00\n")
    result = issue(organizer, "--batch", batch, "--out", organizer / "passes")
    assert "warning: line 3: valid until Sun 06 Dec 09:00" in result.output
    assert "line 2" not in result.output
    assert sorted(p.holder for p in ledger_rows(organizer)) == ["Ann", "Ben", "Cy"]


def test_zones_inside_a_zone_the_pass_does_not_open_are_issued_with_a_warning(organizer):
    """The trial's finding: green-room and production-office both lie inside
    backstage; a pass naming only them is refused at every backstage door."""
    result = issue(organizer, "--tier", "staff", "--holder", "Ida",
                   "--zones", "green-room,production-office")
    assert ("warning: green-room and production-office lie inside backstage, which this pass "
            "does not open: the holder cannot get in; add backstage") in result.output
    quiet = issue(organizer, "--tier", "staff", "--holder", "Jo",
                  "--zones", "backstage,green-room,production-office")
    assert "warning" not in quiet.output
    assert sorted(p.holder for p in ledger_rows(organizer)) == ["Ida", "Jo"]


def test_a_csv_with_several_mistakes_reports_every_one_with_its_line(organizer):
    batch = organizer / "guests.csv"
    batch.write_text(
        "holder,tier,zones,serial,not_after\n"
        "Ann,vip,,,\n"
        "Ben,roadie,,,\n"  # line 3: unknown tier
        "Cy,staff,kitchen,,\n"  # line 4: unknown zone
        "Dee,vip,,,9pm\n"  # line 5: not a time
        "Eve,vip,,12,\n"
        "Fay,vip,,12,\n"  # line 7: serial twice
        "Gus,vip,,,2026-12-04T18:00\n"  # line 8: a day pass for the day before the event
    )
    result = issue(organizer, "--batch", batch, "--out", organizer / "passes", ok=False)
    assert result.exit_code == 2
    assert "has 5 mistakes; nothing was issued" in result.output
    for line, what in [(3, "roadie"), (4, "kitchen"), (5, "9pm"), (7, "also on line 6"),
                       (8, "before the event opens")]:
        assert f"line {line}: " in result.output and what in result.output
    assert "line 2" not in result.output and "line 6:" not in result.output
    assert not (organizer / "passes").exists()
    assert ledger_rows(organizer) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"holder,tier\n" + b"Ann,vip\n" * 5001, "more than 5000 rows"),
        (b"holder,tier\n" + b"A" * 300 + b",vip\n", "longer than 200 characters"),
        (b"holder,tier\n" + b"x" * (1024 * 1024), "larger than 1048576 bytes"),
        (b"holder,tier\nAnn,vip\xff\n", "not UTF-8"),
        (b"holder,tier,extra\nAnn,vip,1\n", "unknown column 'extra'"),
        (b"holder,tier,tier\nAnn,vip,vip\n", "appears twice"),
        (b"holder,tier\nAnn,vip,extra-cell\n", "3 cells, the header names 2"),
        (b"holder,tier\n\"Ann,vip\n", "not valid CSV"),
        (b"holder,tier\nA\x00nn,vip\n", "line 2"),
    ],
)
def test_a_hostile_batch_csv_is_refused_with_a_reason(organizer, content, message):
    batch = organizer / "hostile.csv"
    batch.write_bytes(content)
    result = issue(organizer, "--batch", batch, "--out", organizer / "passes", ok=False)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (organizer / "passes").exists()
    assert ledger_rows(organizer) == []


def test_a_missing_or_broken_image_is_named_without_opencv_noise(organizer, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
    for image, message in [
        (tmp_path / "nowhere.png", "does not exist"),
        (broken, "is not an image"),
    ]:
        # a real process: OpenCV writes its warnings straight to file descriptor 2
        done = subprocess.run(
            [sys.executable, "-m", "scanner.cli", "check", "--policy", organizer / "event.policy",
             "--zone", "stage", "--image", image],
            capture_output=True, text=True, check=False,
        )
        assert done.returncode == 2
        assert message in done.stderr
        assert "WARN" not in done.stderr and "ERROR:" not in done.stderr
        assert done.stderr.count("\n") <= 2, done.stderr  # the trust note and the error


def test_policy_sign_given_a_public_key_says_so(organizer, tmp_path):
    result = run(
        "policy", "sign", EXAMPLE_POLICY, "--key", organizer / "keys/organizer.pub",
        "-o", tmp_path / "x.policy", ok=False,
    )
    assert result.exit_code == 2
    assert "is a public key" in result.output and "organizer.key" in result.output
    assert "chmod" not in result.output
    assert not (tmp_path / "x.policy").exists()


# -- idempotent batches ----------------------------------------------------------


def write_csv(path, rows: list[str]) -> None:
    path.write_text("holder,tier,zones,not_before,not_after\n" + "".join(r + "\n" for r in rows))


def images(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


def sheet_texts(folder) -> set[str]:
    return {decode_png(p)[0] for p in folder.glob("*.png")}


CREW = [
    "Ann Lee,vip,,,",
    "Ben Okafor,staff,catering merch,,",
    ",local-crew,,,",
    ",local-crew,,,",  # two anonymous crew passes: two passes, not one
    "Dee,aaa,,2026-12-05T08:00,2026-12-05T23:00",
]


def test_the_same_batch_twice_is_the_same_passes(organizer):
    batch, out = organizer / "crew.csv", organizer / "passes"
    write_csv(batch, CREW)
    first = issue(organizer, "--batch", batch, "--out", out)
    assert "5 passes: 5 new" in first.output
    texts, sheet = sheet_texts(out), (out / "sheet.html").read_text()
    second = issue(organizer, "--batch", batch, "--out", out)
    assert "5 passes: 5 unchanged" in second.output
    assert sheet_texts(out) == texts and len(texts) == 5
    assert (out / "sheet.html").read_text() == sheet
    assert [p.serial for p in ledger_rows(organizer)] == [1, 2, 3, 4, 5]


def test_a_row_added_later_is_the_only_new_pass(organizer):
    batch, out = organizer / "crew.csv", organizer / "passes"
    write_csv(batch, CREW)
    issue(organizer, "--batch", batch, "--out", out)
    write_csv(batch, [*CREW, ",local-crew,,,"])
    result = issue(organizer, "--batch", batch, "--out", out)
    assert "6 passes: 1 new, 5 unchanged" in result.output
    assert len(ledger_rows(organizer)) == 6


def test_reissue_gives_every_row_a_new_pass_and_revokes_the_old(organizer):
    batch, out = organizer / "crew.csv", organizer / "passes"
    write_csv(batch, CREW[:2])
    issue(organizer, "--batch", batch, "--out", out)
    old = sheet_texts(out)
    result = issue(organizer, "--batch", batch, "--out", out, "--reissue")
    assert "2 passes: 2 reissued" in result.output
    assert "3 replaces 1" in result.output and "4 replaces 2" in result.output
    assert "scanner update revocations" in result.output
    assert sheet_texts(out).isdisjoint(old)
    assert images(out) == ["000003-ann-lee.png", "000004-ben-okafor.png"]
    assert {p.serial for p in ledger_rows(organizer) if p.revoked} == {1, 2}


def test_the_folder_holds_exactly_the_batch_after_a_smaller_run(organizer):
    batch, out = organizer / "crew.csv", organizer / "passes"
    write_csv(batch, CREW)
    issue(organizer, "--batch", batch, "--out", out)
    (out / "sheet.pdf").write_bytes(b"%PDF- an older sheet")
    (out / "notes.txt").write_text("the organizer's own file")
    write_csv(batch, CREW[:2])
    issue(organizer, "--batch", batch, "--out", out)
    assert images(out) == ["000001-ann-lee.png", "000002-ben-okafor.png"]
    assert not (out / "sheet.pdf").exists()  # it showed passes no longer in the batch
    assert (out / "notes.txt").exists()  # never touched
    assert (out / "sheet.html").read_text().count("<svg") == 2
    listing = list(csv.DictReader(io.StringIO((out / "passes.csv").read_text())))
    assert [r["serial"] for r in listing] == ["1", "2"]


def test_a_revoked_pass_is_not_printed_again_by_an_old_csv(organizer):
    batch, out = organizer / "crew.csv", organizer / "passes"
    write_csv(batch, CREW[:2])
    issue(organizer, "--batch", batch, "--out", out)
    run("passes", "revoke", "Ann Lee", "--policy", organizer / "event.policy", "--reason", "banned")
    result = issue(organizer, "--batch", batch, "--out", out)
    assert "2 passes: 1 unchanged, 1 revoked" in result.output
    assert "scanner passes reissue 1" in result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["000002-ben-okafor.png"]
    assert len(ledger_rows(organizer)) == 2


def test_serials_fill_the_gaps_below_the_highest(organizer):
    issue(organizer, "--tier", "vip", "--serial", "4294967295")
    first = issue(organizer, "--tier", "vip")
    second = issue(organizer, "--tier", "vip")
    assert "serial 1," in first.stderr and "serial 2," in second.stderr


def test_every_csv_the_desk_writes_is_defused(organizer):
    # Holder names may hold + - ( ) and digits: "+SUM(A1)" is a legal name that a
    # spreadsheet would run as a formula.
    batch, out = organizer / "evil.csv", organizer / "passes"
    write_csv(batch, ["+SUM(A1),vip,,,", "-2+3,vip,,,"])
    issue(organizer, "--batch", batch, "--out", out)
    listing = list(csv.reader(io.StringIO((out / "passes.csv").read_text())))
    assert [row[1] for row in listing[1:]] == ["'+SUM(A1)", "'-2+3"]
    run("passes", "list", "--policy", organizer / "event.policy", "--csv", organizer / "all.csv")
    listing = list(csv.reader(io.StringIO((organizer / "all.csv").read_text())))
    assert [row[1] for row in listing[1:]] == ["'+SUM(A1)", "'-2+3"]


def test_a_formula_where_a_name_goes_is_refused(organizer):
    batch = organizer / "evil.csv"
    write_csv(batch, ['=HYPERLINK("http://x"),vip,,,', "@cmd,vip,,,"])
    result = issue(organizer, "--batch", batch, "--out", organizer / "passes", ok=False)
    assert result.exit_code == 2 and "2 mistakes" in result.output
    assert "'=' (U+003D) is not allowed" in result.output
    assert ledger_rows(organizer) == []


# -- the pass desk and the revocation list ----------------------------------------


def desk(organizer, *args, ok: bool = True):
    return run("passes", *args, "--policy", organizer / "event.policy", ok=ok)


def sign_revocations(organizer, *serials, ok: bool = True):
    return run(
        "update", "revocations", "--key", organizer / "keys/organizer.key",
        "--policy", organizer / "event.policy", "-o", organizer / "revocations.signed",
        *serials, ok=ok,
    )


def checked(organizer, text, *extra, at=AT_BEFORE):
    return run(
        "check", "--policy", organizer / "event.policy",
        "--trust", organizer / "keys/organizer.pub",
        "--zone", "backstage", "--at", at, *extra, text, ok=False,
    )


@pytest.fixture
def crew(organizer):
    """Four passes issued from a CSV; serials 1..4."""
    batch = organizer / "crew.csv"
    write_csv(batch, ["Ann Lee,vip,,,", "Ann Smith,vip,,,", "Ben,working,,,", "Cy,aaa,,,"])
    issue(organizer, "--batch", batch, "--out", organizer / "passes")
    return {p.serial: p.text for p in ledger_rows(organizer)}


def test_a_second_revocation_list_still_revokes_the_first_pass(organizer, crew):
    sign_revocations(organizer, "3")
    result = sign_revocations(organizer, "4")  # the trap: a list of only 4
    assert "2 passes revoked (3, 4)" in result.output
    revocations = ("--revocations", organizer / "revocations.signed")
    for serial in (3, 4):
        decision = json.loads(checked(organizer, crew[serial], *revocations).stdout)
        assert decision["reason"] == "revoked"
    assert checked(organizer, crew[1], *revocations).exit_code == 0


def test_a_serial_never_issued_is_refused_and_nothing_is_signed(organizer, crew):
    result = sign_revocations(organizer, "3", "77", ok=False)
    assert result.exit_code == 2 and "never issued" in result.output and "77" in result.output
    assert not (organizer / "revocations.signed").exists()
    assert not any(p.revoked for p in ledger_rows(organizer))  # 3 was not revoked either


def test_revoking_by_a_name_several_holders_share_lists_them(organizer, crew):
    result = desk(organizer, "revoke", "ann", "--reason", "lost", ok=False)
    assert result.exit_code == 2
    assert "2 passes match 'ann'" in result.output
    assert "1 Ann Lee (vip)" in result.output and "2 Ann Smith (vip)" in result.output
    assert not any(p.revoked for p in ledger_rows(organizer))
    result = desk(organizer, "revoke", "ann smith", "--reason", "lost")
    assert "revoked 2 Ann Smith (vip): lost" in result.output
    assert "signs the 1 revoked pass" in result.output


def test_check_applies_a_revocation_list_and_refuses_a_foreign_one(organizer, crew, tmp_path):
    desk(organizer, "revoke", "Ben", "--reason", "left the crew")
    sign_revocations(organizer)
    listed = ("--revocations", organizer / "revocations.signed")
    assert checked(organizer, crew[3]).exit_code == 0  # without the list, as before
    decision = json.loads(checked(organizer, crew[3], *listed).stdout)
    assert decision["reason"] == "revoked" and decision["granted"] is False
    # a list signed by a stranger, or altered, is refused, never ignored
    run("keygen", "--out", tmp_path / "stranger")
    run("update", "revocations", "--key", tmp_path / "stranger/organizer.key", "--policy",
        organizer / "event.policy", "-o", tmp_path / "stranger.signed")
    envelope = json.loads((organizer / "revocations.signed").read_text())
    assert '"serials":[3]' in envelope["signed"]
    envelope["signed"] = envelope["signed"].replace('"serials":[3]', '"serials":[]')
    (tmp_path / "altered.signed").write_text(json.dumps(envelope))
    for bad in ("stranger.signed", "altered.signed"):
        result = checked(organizer, crew[3], "--revocations", tmp_path / bad)
        assert result.exit_code == 2 and "revocation list refused" in result.output, bad


def test_policy_show_says_what_is_revoked(organizer, crew):
    desk(organizer, "revoke", "1", "--reason", "lost")
    desk(organizer, "revoke", "Cy", "--reason", "lost")
    sign_revocations(organizer)
    result = run(
        "policy", "show", organizer / "event.policy", "--trust", organizer / "keys/organizer.pub",
        "--revocations", organizer / "revocations.signed",
    )
    assert "revoked  in the policy: none" in result.output
    assert "in revocations.signed" in result.output and "2 passes: 1, 4" in result.output


def test_the_desk_lists_and_shows_passes(organizer, crew):
    desk(organizer, "revoke", "Ben", "--reason", "left the crew")
    everyone = desk(organizer, "list")
    assert everyone.stdout.count("\n") == 5  # a header and four passes
    assert "4 passes (3 valid, 1 revoked)" in everyone.stderr
    assert "revoked: left the crew" in everyone.stdout
    vip = desk(organizer, "list", "--tier", "vip")
    assert "Ann Lee" in vip.stdout and "Ben" not in vip.stdout
    revoked = desk(organizer, "list", "--revoked")
    assert "Ben" in revoked.stdout and "Ann" not in revoked.stdout
    shown = desk(organizer, "show", "cy")
    assert "serial    4" in shown.stdout and crew[4] in shown.stdout


def test_reissue_revokes_the_lost_pass_and_prints_a_new_card(organizer, crew):
    cards = organizer / "cards"
    result = run(
        "passes", "reissue", "Ann Lee", "--key", organizer / "keys/organizer.key",
        "--policy", organizer / "event.policy", "--out", cards,
    )
    assert "revoked 1 Ann Lee (vip); issued 5 to Ann Lee" in result.output
    card = (cards / "card-5.html").read_text()
    assert card.count("<svg") == 1
    assert card.count('class="page') == 1  # one page: no guards' key page behind one card
    (new,) = decode_png(cards / "000005-ann-lee.png")
    sign_revocations(organizer)
    listed = ("--revocations", organizer / "revocations.signed")
    assert json.loads(checked(organizer, crew[1], *listed).stdout)["reason"] == "revoked"
    granted = json.loads(checked(organizer, new, *listed).stdout)
    assert granted["granted"] and granted["holder"] == "Ann Lee" and granted["serial"] == 5
    again = run(
        "passes", "reissue", "1", "--key", organizer / "keys/organizer.key",
        "--policy", organizer / "event.policy", ok=False,
    )
    assert again.exit_code == 2 and "already replaced by 5" in again.output


def test_the_desk_without_a_ledger_says_where_it_looked(organizer):
    result = desk(organizer, "list", ok=False)
    assert result.exit_code == 2 and "no ledger of issued passes" in result.output


# -- the printed cards -------------------------------------------------------------


def test_each_card_names_tier_holder_zones_and_serial_with_a_scalable_qr(organizer):
    batch, out = organizer / "crew.csv", organizer / "passes"
    write_csv(batch, ["Ann Lee,vip,,,", "Ben Okafor,staff,catering merch,,", ",aaa,,,"])
    issue(organizer, "--batch", batch, "--out", out)
    sheet = (out / "sheet.html").read_text()
    assert sheet.count('<svg viewBox="0 0 ') == 3  # sized by CSS, never clipped
    assert "VIP / Guest" in sheet and "Ann Lee" in sheet and "No. 1" in sheet
    assert "<span>CAT</span><span>MER</span>" in sheet
    assert "ALL ZONES" in sheet and "name not printed: check ID" in sheet
    assert sheet.count('class="card"') == 3 and sheet.count('class="page"') == 1


def _delta_e(one: str, two: str) -> float:
    """The CIE76 distance of two sRGB colours (#rrggbb), through CIE Lab (D65)."""

    def lab(colour: str) -> tuple[float, float, float]:
        def linear(c: float) -> float:
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (linear(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
        x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
        y = 0.2126 * r + 0.7152 * g + 0.0722 * b
        z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

        def f(t: float) -> float:
            return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

        return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))

    return math.dist(lab(one), lab(two))


def test_band_colours_are_data_and_the_text_on_them_contrasts(organizer, tmp_path):
    from scanner.organizer.cards import ink_for, load_colours, zone_codes

    shipped = load_colours()
    assert len(set(shipped.tiers.values())) == len(shipped.tiers)  # one colour per tier
    # told apart from afar: every two shipped bands differ by a CIE76 distance of 35 or more
    # (orange photo beside gold vip was 29.8, and looked alike across a room)
    for (a, one), (b, two) in itertools.combinations(shipped.tiers.items(), 2):
        assert _delta_e(one, two) >= 35, (a, b, round(_delta_e(one, two), 1))
    assert ink_for("#f9a825") == "#000000" and ink_for("#1565c0") == "#ffffff"
    assert zone_codes(["stage", "green-room", "loading-dock"]) == {
        "stage": "STA", "green-room": "GR", "loading-dock": "LD"
    }
    codes = zone_codes(["stage", "staging", "green-room", "guest-room", "backstage"])
    assert codes == {"stage": "STAGE", "staging": "STAGI", "green-room": "GRE",
                     "guest-room": "GUE", "backstage": "BAC"}  # only clashing codes grow
    colours = tmp_path / "colours.toml"
    colours.write_text('[tiers]\nvip = "#123456"\n')
    batch = organizer / "crew.csv"
    write_csv(batch, ["Ann Lee,vip,,,"])
    issue(organizer, "--batch", batch, "--out", organizer / "passes", "--colours", colours)
    assert "background: #123456; color: #ffffff" in (organizer / "passes/sheet.html").read_text()
    colours.write_text('[tiers]\nvip = "red; background: url(http://x)"\n')
    result = issue(organizer, "--batch", batch, "--out", organizer / "p2", "--colours", colours,
                   ok=False)
    assert result.exit_code == 2 and "is not a colour" in result.output
    assert not (organizer / "p2").exists()


def test_the_sheet_escapes_what_the_policy_says(organizer, tmp_path, organizer_key):
    from scanner.core.policy import open_policy, sign_policy
    from scanner.organizer.cards import render_sheet
    from scanner.organizer.issuing import make_pass

    toml = EXAMPLE_POLICY.read_text().replace(
        'name = "Example Fest 2026, Main Stage"', 'name = "<script>alert(1)</script>"'
    )
    policy = open_policy(sign_policy(toml, organizer_key, datetime.now(UTC)), None)
    page = render_sheet([make_pass(organizer_key, policy, tier="vip", serial=1)], policy)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_pdf_without_chromium_says_how_to_get_it_and_issues_nothing(organizer, monkeypatch):
    monkeypatch.setenv("PATH", str(organizer))  # no browser anywhere on it
    batch = organizer / "crew.csv"
    write_csv(batch, ["Ann Lee,vip,,,"])
    result = issue(organizer, "--batch", batch, "--out", organizer / "passes", "--pdf", ok=False)
    assert result.exit_code == 1
    assert "needs headless Chromium" in result.output and "apt install chromium" in result.output
    assert ledger_rows(organizer) == [] and not (organizer / "passes").exists()


def test_a_ledger_from_the_first_version_keeps_its_serials(organizer):
    import sqlite3

    path = organizer / "example-fest-2026.issued.db"
    with sqlite3.connect(path) as conn:  # the schema before the pass desk, one pass issued
        conn.execute(
            "CREATE TABLE passes (event TEXT, serial INTEGER, tier TEXT, holder TEXT, zones TEXT,"
            " not_before TEXT, not_after TEXT, key_id TEXT, issued_at TEXT, text_sha256 TEXT,"
            " PRIMARY KEY (event, serial))"
        )
        conn.execute(
            "INSERT INTO passes VALUES ('example-fest-2026', 1, 'vip', 'Ann Lee', NULL, NULL,"
            " NULL, 'k', '2026-11-01T10:00:00Z', 'x')"
        )
    batch = organizer / "crew.csv"
    write_csv(batch, ["Ann Lee,vip,,,", "Ben,vip,,,"])
    result = issue(organizer, "--batch", batch, "--out", organizer / "passes")
    assert "2 passes: 1 new, 1 re-signed" in result.output  # Ann keeps serial 1
    assert [(p.serial, p.holder) for p in ledger_rows(organizer)] == [(1, "Ann Lee"), (2, "Ben")]


@pytest.mark.parametrize(
    "command",
    [
        ["policy", "sign", EXAMPLE_POLICY, "--key", "{dir}/keys/organizer.key",
         "-o", "{dir}/missing/event.policy"],
        ["issue", "--key", "{dir}/keys/organizer.key", "--policy", "{dir}/event.policy",
         "--tier", "vip", "--holder", "Ann Lee", "--png", "{dir}/missing/ann.png"],
        ["update", "revocations", "--key", "{dir}/keys/organizer.key",
         "--policy", "{dir}/event.policy", "-o", "{dir}/missing/revocations.signed"],
        ["update", "time", "--key", "{dir}/keys/organizer.key", "--policy", "{dir}/event.policy",
         "-o", "{dir}/missing/time.signed"],
        ["logs", "merge", "{dir}", "-o", "{dir}/missing/all.db"],
    ],
    ids=["policy-sign", "issue-png", "update-revocations", "update-time", "logs-merge"],
)
def test_a_missing_output_folder_is_named_before_anything_is_signed_or_recorded(
    organizer, command
):
    """Exit 2 and the folder named, no traceback; issue records no pass, so a
    retry after mkdir does not make a second valid pass for the same person."""
    result = run(*[str(a).format(dir=organizer) for a in command], ok=False)
    assert result.exit_code == 2, result.output
    assert f"the folder '{organizer / 'missing'}' does not exist" in result.output
    assert "Traceback" not in result.output
    assert ledger_rows(organizer) == []
    assert not (organizer / "missing").exists()


def test_a_spreadsheets_csv_in_a_semicolon_locale_with_capital_headers_issues(organizer):
    """Excel in a German or French locale saves CSV with ';', a byte-order mark
    and the headers as typed: the batch reads it as the organizer meant it."""
    batch = organizer / "crew.csv"
    batch.write_bytes(
        "\ufeffHolder;Tier;Not_After\r\nZoë Ångström;working;2026-12-05T23:00\r\n"
        "Ολγα Παππά;local-crew;\r\n".encode()
    )
    result = issue(organizer, "--batch", batch, "--out", organizer / "passes")
    assert "2 passes: 2 new" in result.output
    passes = {p.holder: p for p in ledger_rows(organizer)}
    assert set(passes) == {"Zoë Ångström", "Ολγα Παππά"}
    assert passes["Zoë Ångström"].tier == "working"


def test_a_batch_without_a_tier_column_says_what_its_first_line_reads(organizer):
    batch = organizer / "crew.csv"
    batch.write_text("Name|Kind\nAnn|vip\n")
    result = issue(organizer, "--batch", batch, "--out", organizer / "passes", ok=False)
    assert result.exit_code == 2
    assert "needs a header line with at least a 'tier' column" in result.output
    assert "its first line reads 'Name|Kind'" in result.output
    assert ledger_rows(organizer) == []


def test_passes_csv_gives_each_window_in_the_events_time_as_it_was_written(organizer):
    """The listing's window reads as the organizer wrote it (event time, with its
    offset), and the listing fed back as a batch gives the very same passes."""
    batch, out = organizer / "crew.csv", organizer / "passes"
    batch.write_text("holder,tier,not_before,not_after\n"
                     "Jo Park,working,2026-12-05T09:00,2026-12-05T23:00\n")
    issue(organizer, "--batch", batch, "--out", out)
    (row,) = csv.DictReader(io.StringIO((out / "passes.csv").read_text()))
    assert (row["not_before"], row["not_after"]) == ("2026-12-05T09:00+01:00",
                                                     "2026-12-05T23:00+01:00")
    again = organizer / "again.csv"
    again.write_text("holder,tier,not_before,not_after\n"
                     f"Jo Park,working,{row['not_before']},{row['not_after']}\n")
    result = issue(organizer, "--batch", again, "--out", out)
    assert "1 pass: 1 unchanged" in result.output, result.output


def test_a_second_pass_for_the_same_holder_needs_another_on_purpose(organizer):
    """Issuing Ann Lee a pass twice by mistake would make two valid passes: the
    second is refused with what to do (reissue a lost card, or --another)."""
    issue(organizer, "--tier", "vip", "--holder", "Ann Lee")
    twice = issue(organizer, "--tier", "working", "--holder", "ann lee", ok=False)
    assert twice.exit_code == 2
    assert "Ann Lee already holds valid pass #1 (vip)" in twice.output
    assert "scanner passes reissue 1" in twice.output and "--another" in twice.output
    assert [p.serial for p in ledger_rows(organizer)] == [1]
    issue(organizer, "--tier", "working", "--holder", "Ann Lee", "--another")
    assert [p.serial for p in ledger_rows(organizer)] == [1, 2]
    issue(organizer, "--tier", "vip", "--holder", "Ben Okafor")  # someone else: no question


def test_a_second_pass_typed_without_the_accents_is_the_same_holder(organizer):
    """A volunteer types "Zoe Angstrom" for Zoë Ångström, who holds a valid pass:
    the desk finds her under that spelling, so it must refuse a second pass too."""
    issue(organizer, "--tier", "vip", "--holder", "Zoë Ångström")
    again = issue(organizer, "--tier", "vip", "--holder", "Zoe  Angstrom", ok=False)
    assert again.exit_code == 2 and "Zoë Ångström already holds valid pass #1" in again.output
    assert [p.serial for p in ledger_rows(organizer)] == [1]


def test_the_desk_finds_names_as_people_type_them_and_cards_are_named_readably(organizer):
    """At the desk "zoe" finds Zoë Ångström and "olga" finds Ολγα Παππά, as a
    volunteer on a laptop keyboard types them; their card images are named in
    Latin letters, not stripped to nothing."""
    batch, out = organizer / "crew.csv", organizer / "passes"
    batch.write_text(
        "holder,tier\nZoë Ångström,working\nΟλγα Παππά,working\nЮлия Соколова,working\n",  # noqa: RUF001 - Greek on purpose
        encoding="utf-8",
    )
    issue(organizer, "--batch", batch, "--out", out)
    policy = organizer / "event.policy"
    for typed, holder in [("zoe", "Zoë Ångström"), ("ANGSTROM", "Zoë Ångström"),
                          ("olga", "Ολγα Παππά"), ("yuliya sokolova", "Юлия Соколова")]:
        shown = run("passes", "show", typed, "--policy", policy)
        assert holder in shown.output, (typed, shown.output)
    listed = run("passes", "list", "--policy", policy, "--name", "pappa")
    assert "Ολγα Παππά" in listed.output and "Zoë" not in listed.output
    assert sorted(p.name for p in out.glob("*.png")) == [
        "000001-zoe-angstrom.png", "000002-olga-pappa.png", "000003-yuliya-sokolova.png"]


def test_passes_list_lines_up_in_a_terminal_with_cjk_names(organizer):
    from scanner.core.names import display_width

    batch = organizer / "crew.csv"
    batch.write_text("holder,tier\n李小龍,working\nAnn Lee,working\n", encoding="utf-8")
    issue(organizer, "--batch", batch, "--out", organizer / "passes")
    listed = run("passes", "list", "--policy", organizer / "event.policy").output.splitlines()
    rows = [line for line in listed if line.startswith("serial") or " working " in line]
    tier_column = {display_width(line[: line.index("working" if "working" in line else "tier")])
                   for line in rows}  # fmt: skip
    assert len(rows) == 3 and len(tier_column) == 1, listed


def test_check_takes_a_pass_from_stdin_or_by_serial_and_points_out_a_ledger_revocation(
    organizer,
):
    """A pass text holds spaces and $, a trap for a shell: check reads it from
    standard input (-) or takes it from the ledger by serial; and without
    --revocations it says when the ledger already holds the pass as revoked."""
    text = issue(organizer, "--tier", "vip", "--holder", "Ann Lee").output.splitlines()[0]
    assert " " in text or "$" in text  # why a shell user needs this
    policy = organizer / "event.policy"
    base = ["check", "--policy", policy, "--zone", "backstage", "--at", AT_BEFORE]
    piped = CliRunner().invoke(cli, [str(a) for a in [*base, "-"]], input=text + "\n")
    assert piped.exit_code == 0 and '"holder": "Ann Lee"' in piped.output, piped.output
    by_serial = run(*base, "--serial", "1")
    assert '"holder": "Ann Lee"' in by_serial.output
    run("passes", "revoke", "1", "--policy", policy, "--reason", "stolen")
    noted = run(*base, "--serial", "1")
    assert "note: the ledger holds pass #1 as revoked (stolen)" in noted.output
    assert "scanner update revocations" in noted.output
    never = run(*base, "--serial", "99", ok=False)
    assert never.exit_code == 2 and "serial 99 was never issued" in never.output


def test_policy_show_prints_the_venue_the_roster_and_where_exports_go(organizer, tmp_path):
    """The organizer checks what they signed: capacities, doors, walks, the boxes
    with their keys and former keys, and the manager keys exports go to."""
    from scanner.core.keys import generate_private_key, key_id, public_key_text

    box, old_box = generate_private_key(), generate_private_key()
    run("keygen", "--manager", "--out", tmp_path / "mgr")
    manager = (tmp_path / "mgr" / "manager.pub").read_text().strip()
    text = EXAMPLE_POLICY.read_text().replace(
        "# capacity = { photo-pit = 12 }", "capacity = { photo-pit = 12 }"
    ).replace(
        '# [gates.artist-in]\n# door = "artist-entrance"\n# direction = "entry"',
        f'[gates.artist-in]\ndoor = "artist-entrance"\ndirection = "entry"\n'
        f'device_key = "{public_key_text(box.public_key())}"\n'
        f'former_device_keys = ["{public_key_text(old_box.public_key())}"]',
    ).replace('# [export]\n# recipients = ["age1..."]', f'[export]\nrecipients = ["{manager}"]')
    source = tmp_path / "venue.toml"
    source.write_text(text)
    policy = tmp_path / "venue.policy"
    run("policy", "sign", source, "--key", organizer / "keys/organizer.key", "-o", policy)
    shown = run("policy", "show", policy, "--trust", organizer / "keys/organizer.pub").output
    assert "capacity photo-pit: 12 people" in shown
    assert "door     artist-entrance: outside -> backstage" in shown
    assert "artist-entrance <-> pit-gate (outside): 240 s" in shown
    assert (f"gate     artist-in: entry into backstage at artist-entrance; box key "
            f"{key_id(box)}, before: {key_id(old_box)}") in shown
    assert f"exports  encrypted to {manager}" in shown
    assert "re-entry at one door: not within 3 min" in shown
