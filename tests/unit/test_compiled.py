"""proxy.compiled: which build runs, and a stale in-place build is noticed."""

import importlib.machinery
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy import compiled

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_every_compiled_module_is_a_source_file_of_the_package() -> None:
    for module in compiled.COMPILED_MODULES:
        assert (ROOT / compiled.source_path(module)).is_file(), module


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A checkout with a package `rwp_fake`: `mod.py` with an (empty) extension beside it,
    mypyc's companion library, and `plain.py` alone."""
    (tmp_path / "pyproject.toml").write_text("")
    pkg = tmp_path / "rwp_fake"
    pkg.mkdir()
    for name in ("__init__.py", "mod.py", "plain.py"):
        (pkg / name).write_text("")
    for name in (f"mod{SUFFIX}", f"mod__mypyc{SUFFIX}"):
        (pkg / name).write_bytes(b"")
    _age(pkg / "mod.py", 10)
    sys.path.insert(0, str(tmp_path))
    yield pkg
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("rwp_fake")]:
        del sys.modules[name]


def _age(path: Path, seconds: float) -> None:
    stamp = path.stat().st_mtime - seconds
    os.utime(path, (stamp, stamp))


def test_modules_found_as_extensions_count_as_compiled(checkout: Path) -> None:
    assert compiled.compiled_modules(["rwp_fake.mod", "rwp_fake.plain"]) == ["rwp_fake.mod"]


def test_an_extension_older_than_its_source_is_stale(checkout: Path) -> None:
    listed = ["rwp_fake.mod", "rwp_fake.plain"]
    assert compiled.stale_extensions(str(checkout), listed) == []
    _age(checkout / f"mod{SUFFIX}", 20)  # the source was edited after the build
    assert compiled.stale_extensions(str(checkout), listed) == ["rwp_fake.mod"]


def test_an_extension_of_a_module_off_the_list_is_stale(checkout: Path) -> None:
    assert compiled.stale_extensions(str(checkout), ["rwp_fake.plain"]) == ["rwp_fake.mod"]


def test_an_installed_package_is_not_judged_by_modification_times(checkout: Path) -> None:
    (checkout.parent / "pyproject.toml").unlink()  # site-packages has none
    _age(checkout / f"mod{SUFFIX}", 20)
    assert compiled.stale_extensions(str(checkout), ["rwp_fake.plain"]) == []


def test_the_label_and_the_description_name_the_build() -> None:
    count = len(compiled.compiled_modules())
    total = len(compiled.COMPILED_MODULES)
    label = compiled.build_label()
    if count == 0:
        assert (label, compiled.describe()) == ("pure", "pure Python")
    else:
        assert label == ("compiled" if count == total else "partial")
        assert compiled.describe() == f"compiled with mypyc: {count} of {total} data-path modules"
