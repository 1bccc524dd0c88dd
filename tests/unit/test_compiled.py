"""proxy.compiled: which build runs, and a stale in-place build is noticed."""

import importlib.machinery
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy import compiled

ROOT = Path(__file__).resolve().parents[2]


def test_every_compiled_module_is_a_source_file_of_the_package() -> None:
    for module in compiled.COMPILED_MODULES:
        assert (ROOT / compiled.source_path(module)).is_file(), module


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    """A package `rwp_fake` with a module `mod`: its .py and an (empty) extension file."""
    pkg = tmp_path / "rwp_fake"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("")
    (pkg / "plain.py").write_text("")
    (pkg / f"mod{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    sys.path.insert(0, str(tmp_path))
    yield pkg
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("rwp_fake")]:
        del sys.modules[name]


def test_modules_found_as_extensions_count_as_compiled(package: Path) -> None:
    assert compiled.compiled_modules(["rwp_fake.mod", "rwp_fake.plain"]) == ["rwp_fake.mod"]


def _age(path: Path, seconds: float) -> None:
    stamp = path.stat().st_mtime - seconds
    os.utime(path, (stamp, stamp))


def test_an_extension_older_than_its_source_is_stale(package: Path) -> None:
    extension = package / f"mod{importlib.machinery.EXTENSION_SUFFIXES[0]}"
    _age(package / "mod.py", 10)
    assert compiled.stale_extensions(["rwp_fake.mod", "rwp_fake.plain"]) == []
    _age(extension, 20)  # the source was edited after the build
    assert compiled.stale_extensions(["rwp_fake.mod", "rwp_fake.plain"]) == ["rwp_fake.mod"]


def test_describe_names_the_build() -> None:
    count = len(compiled.compiled_modules())
    text = compiled.describe()
    if count:
        assert text.startswith(f"compiled with mypyc: {count} of ")
    else:
        assert text == "pure Python"
