"""Which of rwproxy's modules are compiled with mypyc, and whether a build went stale.

The per-statement and per-connection path (framing, response tracking, classification,
the session, both connection protocols) can be compiled to C extensions by mypyc from the
same typed source (`make compile`, `RWPROXY_COMPILE=1 pip install .`; see setup.py). The
container image ships compiled; a plain `pip install` runs the same code as pure Python.
Measured on the benchmark machine (sysbench point_select, 8 threads, writer-only): 25 %
less proxy user CPU and 14 % less CPU per statement than pure Python.

An in-place build leaves `*.so` files next to the sources, and Python imports an extension
before a `.py` of the same name: after an edit, the old compiled code would run. So the
proxy says at start which build it runs, and warns (the tests refuse) when an extension is
older than its source.

Left pure: `pool` (per session, not per statement; its tests hand it stand-in
connections, which compiled code rejects), `server` (asyncio's stubs type values uvloop
returns differently, which compiled code checks), `protocol.commands` (its ClassVar
fields in slotted dataclasses), and everything that is not on the data path.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from collections.abc import Sequence
from typing import Final

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
)


def source_path(module: str) -> str:
    """The module's `.py` file, relative to the project root (what setup.py compiles)."""
    return module.replace(".", "/") + ".py"


def _spec_origin(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    return spec.origin if spec is not None else None


def _is_extension(path: str | None) -> bool:
    return path is not None and path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled_modules(modules: Sequence[str] = COMPILED_MODULES) -> list[str]:
    """Those of `modules` that import from a compiled extension here."""
    return [m for m in modules if _is_extension(_spec_origin(m))]


def stale_extensions(modules: Sequence[str] = COMPILED_MODULES) -> list[str]:
    """Those of `modules` whose compiled extension is older than the `.py` beside it."""
    stale = []
    for module in modules:
        origin = _spec_origin(module)
        if origin is None or not _is_extension(origin):
            continue
        source = os.path.join(os.path.dirname(origin), module.rpartition(".")[2] + ".py")
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(origin):
            stale.append(module)
    return stale


def describe() -> str:
    """One line for the start-up log and `--version`."""
    count = len(compiled_modules())
    if count == 0:
        return "pure Python"
    return f"compiled with mypyc: {count} of {len(COMPILED_MODULES)} data-path modules"
