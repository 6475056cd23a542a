"""The maps of the code equal the tree.

README's "The map of the code" block (the short one) and ``docs/layout.md`` (the long
one) name every top-level module and sub-package of ``openmm_closure/``, and every name
they give exists: ``name/`` a package (a folder with ``__init__.py``), ``name`` a module
(``name.py``). The folders at the top of the repository that a map names exist too.

How a map is read: a line that starts in the first column names a top-level folder; a
line indented by exactly two spaces names package members, separated by spaces or commas,
up to the first run of two or more spaces (the description follows); a line indented by
exactly four spaces names, the same way, the modules of the last sub-package named above it
(a map that lists a sub-package's modules so must list all of them); a line indented deeper
continues a description.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "openmm_closure"
#: modules the maps already list that branches under review add: a name here (in any
#: sub-package too) may be named before it exists (remove it from this set once it is merged)
ANNOUNCED = {"projective", "periodic"}
#: the top-level folders README's map must name
TOP_LEVEL = {"openmm_closure/", "reporters/", "forcefields/", "examples/", "benchmarks/", "docs/", "tests/"}


def _block(path: Path, heading: str | None) -> str:
    text = path.read_text()
    if heading is not None:
        text = text[text.index(heading):]
    start = text.index("```\n") + 4
    return text[start:text.index("```", start)]


def _parse(block: str) -> tuple[set[str], set[str]]:
    """(the top-level folders, the package members) that a map block names; a module of a
    sub-package is named ``package/module``."""
    top, members = set(), set()
    package = None
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        names = [n for n in re.split(r"[\s,]+", head) if n]
        if indent == 0:
            top.add(head.split()[0])
        elif indent == 2:
            members.update(names)
            package = next((n for n in reversed(names) if n.endswith("/")), package)
        elif indent == 4 and package is not None:
            members.update(package + n for n in names)
    return top, members


def _tree(listed: set[str]) -> set[str]:
    """The top-level modules and sub-packages, and the modules of the sub-packages whose
    modules the map lists."""
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    packages = {p.parent.name + "/" for p in PACKAGE.glob("*/__init__.py")}
    expanded = {m.split("/")[0] + "/" for m in listed if "/" in m.rstrip("/")}
    inner = {f"{d}{p.stem}" for d in expanded for p in (PACKAGE / d).glob("*.py") if p.name != "__init__.py"}
    return modules | packages | inner


MAPS = {"README.md": ("README.md", "## The map of the code"), "docs/layout.md": ("docs/layout.md", None)}


@pytest.mark.parametrize("name", sorted(MAPS))
def test_map_names_every_module_and_package(name):
    path, heading = MAPS[name]
    _, members = _parse(_block(ROOT / path, heading))
    assert len(members) >= 20, "the map reader found too few names: the block's format changed"
    assert _tree(members) - members == set(), f"{name}: add these to the map"


@pytest.mark.parametrize("name", sorted(MAPS))
def test_every_name_in_the_map_exists(name):
    path, heading = MAPS[name]
    top, members = _parse(_block(ROOT / path, heading))
    missing = set()
    for member in members:
        if member.rstrip("/").rsplit("/", 1)[-1] in ANNOUNCED:
            continue
        if member.endswith("/"):
            ok = (PACKAGE / member / "__init__.py").is_file()
        else:
            ok = (PACKAGE / f"{member}.py").is_file()
        if not ok:
            missing.add(member)
    assert missing == set(), f"{name}: the map names what the tree lacks"
    assert {t for t in top if not (ROOT / t).is_dir()} == set()


def test_readme_map_names_the_top_level_folders():
    top, _ = _parse(_block(ROOT / "README.md", "## The map of the code"))
    assert TOP_LEVEL - top == set()


def test_the_reader_splits_names_from_descriptions():
    block = ("pkg/   the package\n  a b/, c   what they do\n                 more text\n"
             "  d/          a wing\n    e f       its modules\n")
    assert _parse(block) == ({"pkg/"}, {"a", "b/", "c", "d/", "d/e", "d/f"})
