# Benchmarks (bench/run.py). Include from the Makefile with `include bench/bench.mk` (there
# they run on the compiled build, `make compile` first), or run standalone from the
# repository root on whichever build is in place: `make -f bench/bench.mk bench-quick`.
# The report's facts say which build ran.
#   make bench         full suite (~25 min), report in bench/results/<date>-full.md
#   make bench-quick   point_select at 1 and 8 threads, short runs (< 3 min)
#   make bench BENCH_ARGS="--rounds 5 --no-profile"
# Needs the venv (`make venv`); installs haproxy, sysbench (and the local cluster's packages)
# from Debian and py-spy into the venv when they are missing.

BIN  ?= .venv/bin
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT  ?= DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-profile bench-deps

bench: bench-deps ## benchmarks: sysbench, churn, streaming, idle clients, profile
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: bench-deps ## a quick benchmark pass (< 3 min)
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

bench-profile: bench-deps ## py-spy on rwproxy under oltp_point_select, 8 threads
	$(BIN)/python -m bench.run --profile-only $(BENCH_ARGS)

bench-deps:
	@[ -x $(BIN)/python ] || { echo "no $(BIN)/python: run 'make venv' first"; exit 1; }
	@missing=""; \
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v sysbench >/dev/null || missing="$$missing sysbench"; \
	[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null || missing="$$missing mariadb-server"; \
	command -v mariadb >/dev/null || missing="$$missing mariadb-client"; \
	[ -x /usr/sbin/dnsmasq ] || command -v dnsmasq >/dev/null || missing="$$missing dnsmasq-base"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -q && $(SUDO) $(APT) $$missing; \
	fi
	@[ -x $(BIN)/py-spy ] || $(BIN)/python -m pip install -q py-spy
