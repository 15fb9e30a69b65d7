"""Reading and patching an SD card image without mounting anything.

The boot test works on a copy of the built image. It needs the partition
table (sfdisk), files from the FAT boot partition (mtools) and a few files
added to the ext4 root (debugfs): all on the image file itself, at the
partition's byte offset, so no loop device, no root-only mount.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes
    type: str


def partitions(image: Path) -> list[Partition]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], check=True,
                                      capture_output=True, text=True).stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    return [Partition(number=i + 1, start=p["start"] * sector, size=p["size"] * sector,
                      type=p["type"]) for i, p in enumerate(table["partitions"])]


def disk_id(image: Path) -> str:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], check=True,
                                      capture_output=True, text=True).stdout)["partitiontable"]
    return str(table["id"]).removeprefix("0x")


class FatPartition:
    """The FAT boot partition, through mtools."""

    def __init__(self, image: Path, part: Partition) -> None:
        self.image = image
        self.target = f"{image}@@{part.start}"

    def read(self, name: str) -> bytes:
        return subprocess.run(["mtype", "-i", self.target, f"::{name}"], check=True,
                              capture_output=True, env=MTOOLS_ENV).stdout

    def copy_out(self, name: str, dest: Path) -> Path:
        subprocess.run(["mcopy", "-n", "-i", self.target, f"::{name}", str(dest)],
                       check=True, env=MTOOLS_ENV)
        return dest

    def write(self, name: str, data: bytes, tmp: Path) -> None:
        src = tmp / Path(name).name
        src.write_bytes(data)
        subprocess.run(["mcopy", "-o", "-i", self.target, str(src), f"::{name}"],
                       check=True, env=MTOOLS_ENV)

    def names(self, folder: str = "", *, recursive: bool = False) -> list[str]:
        args = ["mdir", "-b"] + (["-/"] if recursive else [])
        out = subprocess.run([*args, "-i", self.target, f"::{folder}"], check=True,
                             capture_output=True, text=True, env=MTOOLS_ENV).stdout
        return [line.removeprefix("::/") for line in out.splitlines() if line.strip()]

    def copy_tree_out(self, folder: str, dest: Path) -> Path:
        subprocess.run(["mcopy", "-s", "-n", "-i", self.target, f"::{folder}", str(dest)],
                       check=True, env=MTOOLS_ENV)
        return dest / Path(folder).name


def make_usb_stick(path: Path, size_mib: int = 64) -> FatPartition:
    """An empty stick as shops sell them: one FAT partition from 1 MiB on."""
    with open(path, "wb") as f:
        f.truncate(size_mib * 2**20)
    subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(path)],
                   input="label: dos\nstart=2048, type=c\n", text=True, check=True)
    part = partitions(path)[0]
    subprocess.run(["mkfs.vfat", "-n", "STICK", "--offset", str(part.start // 512), str(path),
                    str(part.size // 1024)], check=True, capture_output=True)
    return FatPartition(path, part)


class Ext4Partition:
    """An ext4 partition, through debugfs (as root, files end up owned by root)."""

    def __init__(self, image: Path, part: Partition) -> None:
        self.device = f"{image}?offset={part.start}"

    def run(self, *commands: str, write: bool = False) -> str:
        args = ["debugfs"] + (["-w"] if write else [])
        script = "\n".join(commands) + "\n"
        proc = subprocess.run([*args, "-f", "-", self.device], input=script,
                              capture_output=True, text=True, check=True)
        errors = [line for line in proc.stderr.splitlines()
                  if line and not line.startswith("debugfs ")]
        if errors:
            raise RuntimeError(f"debugfs: {'; '.join(errors)}")
        return proc.stdout

    def read(self, path: str) -> bytes:
        return subprocess.run(["debugfs", "-R", f"cat {path}", self.device],
                              capture_output=True, check=True).stdout

    def exists(self, path: str) -> bool:
        proc = subprocess.run(["debugfs", "-R", f"stat {path}", self.device],
                              capture_output=True, text=True, check=False)
        return "File not found" not in proc.stderr and proc.returncode == 0

    def mkdir(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if not self.exists(sub):
                self.run(f"mkdir {sub}", write=True)

    def write(self, path: str, src: Path, mode: int = 0o644, owner: tuple[int, int] = (0, 0)
              ) -> None:  # fmt: skip
        """Copy the host file ``src`` to ``path`` (parents made as needed),
        owned by ``owner`` (uid, gid)."""
        self.mkdir(str(Path(path).parent))
        commands = [f"rm {path}"] if self.exists(path) else []
        commands += [f"write {src} {path}", f"sif {path} mode 0{0o100000 | mode:o}",
                     f"sif {path} uid {owner[0]}", f"sif {path} gid {owner[1]}"]
        self.run(*commands, write=True)

    def symlinks(self, links: dict[str, str]) -> None:
        """Make symbolic links ``path -> target`` (new paths), in one debugfs run."""
        for folder in sorted({str(Path(path).parent) for path in links}):
            self.mkdir(folder)
        self.run(*(f"symlink {path} {target}" for path, target in links.items()), write=True)
