# rwproxy developer entry points. `make test` and `make demo` work on a fresh
# Debian/Ubuntu machine: they install the system packages they need with apt-get
# (as root, or through sudo) and the Python packages into .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
PYTEST_ARGS ?=

.PHONY: test demo lint typecheck unit integration system-deps venv cluster-up cluster-down \
        cluster-status clean compile clean-compiled compile-deps

# mypyc compiles the modules proxy/compiled.py lists (setup.py); it also reads the types and
# constants of the modules they import, so any source of the package triggers a rebuild.
PROXY_SOURCES  := $(shell find proxy -name '*.py')
COMPILED_STAMP := build/mypyc/.built

# The unit tests run on the pure-Python modules first, then everything runs compiled, as
# the container image ships it (--expect-build makes the tests check which one runs).
test: system-deps venv lint typecheck lint-deploy ## lint, type-check and run the whole test suite
	$(MAKE) --no-print-directory clean-compiled
	$(BIN)/pytest tests/unit -q --expect-build=pure $(PYTEST_ARGS)
	$(MAKE) --no-print-directory compile
	$(BIN)/pytest --expect-build=compiled $(PYTEST_ARGS)

unit: venv clean-compiled ## the pure tests only (no servers), on pure Python
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: system-deps venv compile ## the tests against the local cluster, compiled
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

demo: system-deps venv compile ## start the local cluster and show it
	$(BIN)/rwproxy demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

cluster-up: system-deps venv
	$(BIN)/rwproxy cluster up

cluster-status: venv
	$(BIN)/rwproxy cluster status

cluster-down: venv
	$(BIN)/rwproxy cluster down

# A C compiler and the Python headers, for the compiled build (make compile).
compile-deps:
	@missing=""; \
	command -v gcc >/dev/null || missing="$$missing gcc libc6-dev"; \
	$(PYTHON) -c 'import os, sysconfig; os.stat(sysconfig.get_paths()["include"] + "/Python.h")' \
		2>/dev/null || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) $(APT) $$missing; \
	fi

# System packages: MariaDB server and client, dnsmasq (the cluster DNS), sysbench (a real
# client in the integration tests), python venv; and compile-deps.
system-deps: compile-deps
	@missing=""; \
	[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || missing="$$missing mariadb-server"; \
	command -v mariadb >/dev/null || missing="$$missing mariadb-client"; \
	[ -x /usr/sbin/dnsmasq ] || command -v dnsmasq >/dev/null || missing="$$missing dnsmasq-base"; \
	command -v sysbench >/dev/null || missing="$$missing sysbench"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv python3-pip"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) $(APT) $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

compile: $(COMPILED_STAMP) ## compile the data-path modules with mypyc, in place

# Always from scratch: mypyc's incremental state has crashed on a rebuild here, and an old
# extension of a module no longer compiled would shadow its source.
$(COMPILED_STAMP): $(STAMP) setup.py $(PROXY_SOURCES) | compile-deps
	$(MAKE) --no-print-directory clean-compiled
	RWPROXY_COMPILE=1 MYPY_CACHE_DIR=build/mypyc/cache $(BIN)/python setup.py -q build_ext \
		--inplace -j 2 --build-temp build/mypyc/temp --build-lib build/mypyc/lib
	touch $@

clean-compiled: ## remove the compiled modules: back to pure Python
	find proxy -name '*.so' -delete
	rm -rf build/mypyc

clean: clean-compiled
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info

# Validation of the Dockerfile, compose file and Kubernetes manifests (make lint-deploy).
include deploy/lint.mk

# Benchmarks against direct, haproxy and rwproxy (make bench, make bench-quick).
include bench/bench.mk
include mk/hardening.mk

# What is measured and fuzzed is the build the container image ships. (bench-profile runs
# whichever build is in place: py-spy sees compiled functions only as their callers' time,
# so `make clean-compiled bench-profile` shows the data path function by function.)
bench bench-quick fuzz soak: compile
