"""scripts/image/check-boards: the static proof that every board finds its root.

On the built image (slow): every board the README names finds its root, and
the per-board table is printed. On small hand-made device trees and kernels
(fast): the walk follows what the SD host really needs, a driver that is
missing from the initramfs is named and fails the check, a disabled node is
never a dependency, and config.txt is read as the firmware reads it.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .card import TOP, check_boards, flash_copy, progress
from .conftest import NEEDS_IMAGE_TOOLS

TOOL = TOP / "scripts/image/check-boards"
needs_dtc = pytest.mark.skipif(shutil.which("dtc") is None or shutil.which("cpio") is None,
                               reason="scripts/bootstrap test installs dtc and cpio")

# A board in miniature: an SD host with a clock from a built-in driver, a supply
# from a module, pins from a built-in pin controller, and a disabled DSI block
# that the clock controller names as one of its parents.
DTS = """
/dts-v1/;
/ {
    #address-cells = <1>; #size-cells = <1>;
    osc: osc { compatible = "fixed-clock"; #clock-cells = <0>; };
    soc {
        compatible = "simple-bus"; #address-cells = <1>; #size-cells = <1>; ranges;
        interrupt-parent = <&intc>;
        intc: interrupt-controller@100 { compatible = "toy,intc"; reg = <0x100 4>;
            interrupt-controller; #interrupt-cells = <1>; };
        cprman: clocks@200 { compatible = "toy,cprman"; reg = <0x200 4>; #clock-cells = <1>;
            clocks = <&osc>, <&dsi 0>; };
        gpio: gpio@300 { compatible = "toy,gpio"; reg = <0x300 4>; #gpio-cells = <2>;
            sd_pins: sd-pins { pins = "sd"; }; };
        dsi: dsi@400 { compatible = "toy,dsi"; reg = <0x400 4>; #clock-cells = <1>;
            status = "disabled"; };
        mmc@500 { compatible = "toy,sd-host"; reg = <0x500 4>; interrupts = <5>;
            clocks = <&cprman 3>; vmmc-supply = <&vcc>; pinctrl-0 = <&sd_pins>;
            status = "okay"; };
        mmc@600 { compatible = "toy,other-host"; reg = <0x600 4>; status = "disabled"; };
    };
    vcc: regulator { compatible = "toy,regulator"; gpio = <&gpio 6 0>; };
};
"""
BUILT_IN = ("fixed-clock", "simple-bus", "toy,intc", "toy,cprman", "toy,gpio")


def of_device_id(compatible: str) -> bytes:
    """One entry of a built-in driver's match table, as it sits in the kernel image."""
    return b"\0" * 64 + compatible.encode().ljust(128, b"\0") + b"\xff" * 8


def toy_kernel(tmp: Path, initramfs_has: tuple[str, ...]):
    """A kernel image with built-in match tables, modules.* files, and an
    initramfs (gzip cpio) holding the modules named."""
    boards = check_boards()
    image = tmp / "Image"
    # "toy,regulator" is only mentioned in passing (no table shape): not a driver.
    image.write_bytes(b"\x00MZ" + b"".join(of_device_id(c) for c in BUILT_IN)
                      + b"quirk for toy,regulator\0")
    modules = tmp / "modules"
    modules.mkdir()
    (modules / "modules.alias").write_text(
        "alias of:N*T*Ctoy,sd-hostC* toy_sd\nalias of:N*T*Ctoy,sd-host toy_sd\n"
        "alias of:N*T*Ctoy,regulator toy_reg\n")
    (modules / "modules.dep").write_text(
        "kernel/drivers/mmc/host/toy-sd.ko: kernel/drivers/mmc/host/toy-sd-core.ko\n"
        "kernel/drivers/mmc/host/toy-sd-core.ko:\n"
        "kernel/drivers/regulator/toy-reg.ko:\n")
    (modules / "modules.builtin").write_text("kernel/drivers/mmc/core/mmc_block.ko\n")
    tree = tmp / "initramfs-tree"
    for name in initramfs_has:
        path = tree / "usr/lib/modules/6.1.0-toy/kernel" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x7fELF")
    listing = subprocess.run(["find", "."], cwd=tree, capture_output=True, text=True,
                             check=True).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree,
                             input=listing.encode(), capture_output=True, check=True).stdout
    initramfs = tmp / "initrd.img"
    initramfs.write_bytes(gzip.compress(archive))
    return boards, boards.Kernel(image, modules, initramfs, None)


def toy_tree(tmp: Path):
    boards = check_boards()
    dts, dtb = tmp / "toy.dts", tmp / "toy.dtb"
    dts.write_text(DTS)
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(dts)],
                   check=True)
    return boards.DeviceTree(dtb)


@needs_dtc
def test_the_walk_follows_clocks_supplies_gpios_pins_buses_and_interrupts(tmp_path):
    boards = check_boards()
    tree = toy_tree(tmp_path)
    hosts, nodes, skipped = boards.sd_path(tree)
    assert hosts == {"/soc/mmc@500": "SD card slot"}  # the disabled host is not one
    reached = {n.node: n.why for n in nodes}
    assert set(reached) == {"/soc/mmc@500", "/soc/clocks@200", "/regulator", "/soc/gpio@300",
                            "/soc/interrupt-controller@100", "/soc", "/osc"}
    assert reached["/regulator"] == "vmmc-supply of /soc/mmc@500"
    assert reached["/soc/gpio@300"] == "pinctrl-0 of /soc/mmc@500"  # the pin group's owner
    assert reached["/osc"] == "clocks of /soc/clocks@200"
    # The clock controller names a DSI block as a parent, but it is disabled:
    # the kernel never waits for it, so neither does the proof.
    assert skipped == ["/soc/dsi@400 (clocks of /soc/clocks@200): disabled, so never "
                       "waited for"]


@needs_dtc
def test_a_driver_missing_from_the_initramfs_is_named_and_fails_the_board(tmp_path):
    boards = check_boards()
    tree = toy_tree(tmp_path)
    _, nodes, _ = boards.sd_path(tree)
    # The SD host's module is there, but the module it depends on is not.
    _, kernel = toy_kernel(tmp_path, ("drivers/mmc/host/toy-sd.ko",
                                      "drivers/regulator/toy-reg.ko"))
    for node in nodes:
        boards.check_driver(node, tree, kernel)
    found = {n.node: n for n in nodes}
    host = found["/soc/mmc@500"]
    assert not host.ok and "toy_sd_core" in host.where and "scanner-boot-modules" in host.where
    assert found["/regulator"].ok and found["/regulator"].where == "initramfs"
    assert found["/soc/clocks@200"].where == "built in"
    assert all(found[n].ok for n in found if n != "/soc/mmc@500")


@needs_dtc
def test_a_compatible_the_kernel_only_mentions_is_no_driver(tmp_path):
    boards = check_boards()
    tree = toy_tree(tmp_path)
    _, nodes, _ = boards.sd_path(tree)
    _, kernel = toy_kernel(tmp_path, ("drivers/mmc/host/toy-sd.ko",
                                      "drivers/mmc/host/toy-sd-core.ko"))
    kernel.aliases = [a for a in kernel.aliases if a[1] != "toy_reg"]  # no module either
    regulator = next(n for n in nodes if n.node == "/regulator")
    boards.check_driver(regulator, tree, kernel)
    assert not regulator.ok and regulator.where.startswith("MISSING: no module alias")


def test_config_txt_is_read_per_board_as_the_firmware_reads_it():
    boards = check_boards()
    by_name = {b.name: b for b in boards.BOARDS}
    config = ("arm_64bit=1\nupstream_kernel=1\nkernel=vmlinuz-a\ninitramfs initrd-a followkernel\n"
              "[pi4]\nkernel=vmlinuz-pi4\n[all]\ncmdline=cmd.txt\n")
    pi3 = boards.boot_files(config, by_name["Pi 3 B"])
    pi400 = boards.boot_files(config, by_name["Pi 400"])
    assert (pi3.kernel, pi3.initramfs, pi3.dtb, pi3.cmdline) == (
        "vmlinuz-a", "initrd-a", "bcm2837-rpi-3-b.dtb", "cmd.txt")
    assert pi400.kernel == "vmlinuz-pi4" and pi400.dtb == "bcm2711-rpi-400.dtb"
    assert "bootcode.bin" in pi3.files and "start4.elf" in pi400.files
    with pytest.raises(boards.CheckError, match="section \\[gpio4=1\\]"):
        boards.boot_files(config + "[gpio4=1]\n", by_name["CM4"])
    with pytest.raises(boards.CheckError, match="upstream_kernel=1"):
        boards.boot_files("arm_64bit=1\nkernel=k\n", by_name["CM3"])
    with pytest.raises(boards.CheckError, match="32-bit"):
        boards.boot_files("upstream_kernel=1\n", by_name["Zero 2 W"])


def needs_the_image(test):
    for mark in NEEDS_IMAGE_TOOLS:
        test = mark(test)
    return test


@needs_the_image
def test_every_board_the_readme_names_finds_its_root_on_the_built_image(built_image, tmp_path):
    card = flash_copy(built_image["image"], tmp_path)
    findings = tmp_path / "boards.json"
    proc = subprocess.run([str(TOOL), str(card.image), "--json", str(findings)],
                          capture_output=True, text=True, check=False)
    progress("the static proof, per board:\n" + proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(findings.read_text())
    boards = {b["board"]: b for b in result["boards"]}
    assert set(boards) == {"Pi 3 A+", "Pi 3 B", "Pi 3 B+", "Pi 4 B", "Pi 400", "CM3", "CM4",
                           "Zero 2 W"}
    for name, board in boards.items():
        assert board["ok"], (name, board["problems"])
        roles = set(board["hosts"].values())
        assert roles - {"Wi-Fi (SDIO)"}, (name, board["hosts"])
    # The Pi's own SD hosts, and the Pi 4's card slot with its regulators on
    # the firmware's GPIO expander, all resolved.
    pi3 = {n["node"]: n for n in boards["Pi 3 B"]["nodes"]}
    assert pi3["/soc/mmc@7e202000"]["driver"] == "bcm2835 (module)"
    pi4 = {n["node"]: n for n in boards["Pi 4 B"]["nodes"]}
    assert pi4["/emmc2bus/mmc@7e340000"]["driver"] == "sdhci_iproc (module)"
    assert {"/sd_io_1v8_reg", "/sd_vcc_reg", "/soc/firmware/gpio", "/soc/firmware"} <= set(pi4)
    assert result["general_problems"] == []
