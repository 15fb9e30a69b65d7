"""The wheel is what goes into the SD image (scripts/image/wheelhouse) and
onto a manager's laptop: it must carry every template and data file the
code reads, not just the Python."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from .conftest import ROOT


def test_the_wheel_carries_every_file_the_package_reads(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("backstage_scanner-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    source = ROOT / "scanner"
    wanted = {
        str(p.relative_to(ROOT))
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    missing = sorted(wanted - names)
    assert not missing, f"not in the wheel: {missing}"
