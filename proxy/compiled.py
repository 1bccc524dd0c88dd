"""Which of rwproxy's modules are compiled with mypyc, and whether a build went stale.

The per-statement and per-connection path (framing, response tracking, classification,
the session, both connection protocols) can be compiled to C extensions by mypyc from the
same typed source (`make compile` in place, or a compiled wheel: see setup.py). The
container image ships compiled; a plain `pip install` runs the same code as pure Python.
Measured on the benchmark machine (sysbench point_select, 8 threads, writer-only, 3
interleaved runs): 20 % less proxy user CPU and 14 % less CPU per statement than pure
Python (commit 97b4916).

An in-place build leaves `*.so` files next to the sources, and Python imports an extension
before a `.py` of the same name: after an edit, the old compiled code would run. So the
proxy says at start which build it runs, and in a checkout warns (the tests refuse) when an
extension is older than its source or belongs to no module of the list.

Left pure: `pool` (per session, not per statement; its tests hand it stand-in
connections, which compiled code rejects), `server` and `metrics` (compiled, no measurable
gain; and uvloop returns a list where asyncio's stubs say tuple, which compiled code
checks; what every statement records lives in `stats`, which is compiled), `logs` (a
compiled logging.Handler breaks logging's weak references), `protocol.commands` (ClassVar
fields in slotted dataclasses), and everything that is not on the data path.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from collections.abc import Sequence
from typing import Final

_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__))

#: The modules setup.py compiles when RWPROXY_COMPILE=1 (dotted names under `proxy`).
COMPILED_MODULES: Final = (
    "proxy.protocol.auth",
    "proxy.protocol.codec",
    "proxy.protocol.constants",
    "proxy.protocol.errors",
    "proxy.protocol.framing",
    "proxy.protocol.handshake",
    "proxy.protocol.packets",
    "proxy.protocol.response",
    "proxy.protocol.resultset",
    "proxy.routing.classify",
    "proxy.routing.functions",
    "proxy.routing.lexer",
    "proxy.routing.router",
    "proxy.backend",
    "proxy.client",
    "proxy.prepared",
    "proxy.ryw",
    "proxy.session",
    "proxy.stats",
)


def source_path(module: str) -> str:
    """The module's `.py` file, relative to the project root (what setup.py compiles)."""
    return module.replace(".", "/") + ".py"


def _spec_origin(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    return spec.origin if spec is not None else None


def _extension_suffix(path: str) -> str:
    """The suffix that makes `path` a C extension ('.cpython-311-x86_64-linux-gnu.so'), or ''."""
    return next((s for s in importlib.machinery.EXTENSION_SUFFIXES if path.endswith(s)), "")


def _is_extension(path: str | None) -> bool:
    return path is not None and bool(_extension_suffix(path))


def compiled_modules(modules: Sequence[str] = COMPILED_MODULES) -> list[str]:
    """Those of `modules` that import from a compiled extension here."""
    return [m for m in modules if _is_extension(_spec_origin(m))]


def build_label() -> str:
    """`compiled` (every module of the list), `partial` or `pure`: rwproxy_build_info's label."""
    count = len(compiled_modules())
    if count == 0:
        return "pure"
    return "compiled" if count == len(COMPILED_MODULES) else "partial"


def stale_extensions(
    package_dir: str = _PACKAGE_DIR, modules: Sequence[str] = COMPILED_MODULES
) -> list[str]:
    """Extensions in a source checkout that run instead of newer code: older than the `.py`
    beside them, or left from a module no longer in `modules`.

    Only a checkout (a pyproject.toml beside the package) is checked: pip does not keep
    modification times when it installs a wheel, so there they would mean nothing.
    """
    root = os.path.dirname(package_dir)
    if not os.path.exists(os.path.join(root, "pyproject.toml")):
        return []
    stale = []
    for folder, _, names in os.walk(package_dir):
        for name in names:
            suffix = _extension_suffix(name)
            if not suffix or name.endswith("__mypyc" + suffix):  # mypyc's companion library
                continue
            extension = os.path.join(folder, name)
            stem = extension[: -len(suffix)]
            module = os.path.relpath(stem, root).replace(os.sep, ".")
            source = stem + ".py"
            built = os.path.getmtime(extension)
            edited = os.path.exists(source) and os.path.getmtime(source) > built
            if module not in modules or edited:
                stale.append(module)
    return sorted(stale)


def describe() -> str:
    """One line for the start-up log and `--version`."""
    count = len(compiled_modules())
    if count == 0:
        return "pure Python"
    return f"compiled with mypyc: {count} of {len(COMPILED_MODULES)} data-path modules"
