"""The code's layers, checked: every part of ``scanner`` imports only the
parts below it, never one beside or above it, so there is no cycle and a
newcomer can read the layers bottom-up (``docs/architecture.md``)."""

from __future__ import annotations

import ast
from pathlib import Path

import scanner

PACKAGE = Path(scanner.__file__).parent

# Bottom first. A part may import the parts on lines above its own, not its own line's others.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "words"),
    ("files",),
    ("core",),  # the pure decisions: passes, keys, policy, trust
    ("keyfiles",),
    ("record",),  # what a scan row is: the log's tables, chain and CSV rule
    ("venue",),  # the doors' link, below the gate that runs it
    ("gate",),
    ("transfer",),  # sticks: the gate's exports and updates
    ("organizer", "manager"),
    ("tools",),  # demos, benchmarks, synthetic frames
    ("cli",),
)
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_parts(source: str, module: str, *, is_package: bool = False) -> set[tuple[str, int]]:
    """(part of scanner, line) of every import in the source of ``module``, at any depth."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            names = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "scanner" and len(parts) > 1 and part_exists(parts[1]):
                found.add((parts[1], node.lineno))
    return found


def part_exists(name: str) -> bool:
    """A part is a subpackage or a module; ``from .. import __version__`` is neither."""
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def imports_of(path: Path) -> set[tuple[str, int]]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        return imported_parts(path.read_text(encoding="utf-8"), module[: -len(".__init__")],
                              is_package=True)  # fmt: skip
    return imported_parts(path.read_text(encoding="utf-8"), module)


def test_every_part_has_a_layer():
    parts = {part_of(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert parts <= set(RANK), f"give these a layer: {sorted(parts - set(RANK))}"


def test_no_part_imports_a_part_beside_or_above_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = part_of(path)
        if here in ("__init__", "__main__"):
            continue
        for there, line in sorted(imports_of(path)):
            if there != here and RANK.get(there, len(LAYERS)) >= RANK[here]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {here} imports {there}")
    assert wrong == [], "\n".join(wrong)


def test_the_check_sees_imports_upward_sideways_and_deep_inside_functions():
    source = (
        "from ..transfer.export import verify_export\n"  # gate -> transfer: upward
        "from .. import __version__\n"  # the package's own version: no part
        "def later():\n"
        "    from scanner.cli import base\n"  # inside a function, absolute
        "    from ..core import passes\n"  # downward
    )
    found = imported_parts(source, "scanner.gate.probe")
    assert found == {("transfer", 1), ("cli", 4), ("core", 5)}
    assert RANK["transfer"] > RANK["gate"] and RANK["cli"] > RANK["gate"]
    assert RANK["organizer"] == RANK["manager"]  # beside each other: neither may import the other
