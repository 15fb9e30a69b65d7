"""The organizer's commands, run as a person would run them: keygen, policy
sign and show, issue (single and batch), and check with its exit codes."""

from __future__ import annotations

import json
import os
import stat

import pytest
import zxingcpp
from click.testing import CliRunner

from scanner.cli import cli
from scanner.core.decision import Gate, decide
from scanner.gate.frames import read_image
from scanner.organizer.issuing import Ledger

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


def test_a_private_key_readable_by_others_is_refused(organizer):
    key = organizer / "keys/organizer.key"
    key.chmod(0o644)
    result = run(
        "issue", "--key", key, "--policy", organizer / "event.policy", "--tier", "vip", ok=False
    )
    assert result.exit_code == 1
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
    assert result.exit_code == 1 and "tier 'roadie' is not in the policy" in result.output
    result = issue(organizer, "--tier", "staff", "--zones", "catering,kitchen", ok=False)
    assert "zone 'kitchen' is not in the policy" in result.output


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
    assert serials == [3, 5, 6, 7, 8]
    images = sorted(p.name for p in (organizer / "passes").glob("*.png"))
    assert images == ["000003-cy.png", "000006-ann.png", "000007-ben.png", "000008-dee.png"]
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
            (("--zone", "stage"), "give either QR_TEXT or --image"),
            (("--zone", "stage", "--at", "soon", "BP1:X"), "is not a time"),
            (("--zone", "stage", "--image", "/nonexistent.png"), "cannot read image"),
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
