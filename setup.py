"""Build hook: compile the data-path modules with mypyc when RWPROXY_COMPILE=1.

Everything else about the package is in pyproject.toml. Without the variable this builds
the pure-Python package; with it, `proxy.compiled.COMPILED_MODULES` become C extensions
(one per module: `separate=True` keeps each inside the package, so an editable install
and an in-place build import them without a top-level shared library). The build needs
a C compiler with the Python headers, and mypy with the package's dependencies and
types-PyYAML in the building environment (mypyc type-checks what it compiles), hence
`--no-build-isolation`:

    pip install mypy types-PyYAML . && RWPROXY_COMPILE=1 pip wheel --no-build-isolation .

(the Dockerfile's builder stage does exactly that; `make compile` builds in place). The
result does not need mypy to run.
"""

import os
import sys

from setuptools import setup

ext_modules = []
if os.environ.get("RWPROXY_COMPILE") == "1":
    from mypyc.build import mypycify

    # setuptools' build backend does not put the project on sys.path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    from proxy.compiled import COMPILED_MODULES, source_path

    sources = [source_path(m) for m in COMPILED_MODULES]
    ext_modules = mypycify(sources, separate=True, target_dir="build/mypyc/c")

setup(ext_modules=ext_modules)
