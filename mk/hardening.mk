# Hardening runs: the long socket fuzz and the soak. Included from the Makefile with
# `include mk/hardening.mk` (after bench/bench.mk: `soak` uses its bench-deps).
#   make fuzz                      1,000,000 hostile connections (tests/fuzz/run.py)
#   make fuzz FUZZ_INPUTS=20000    a shorter run; FUZZ_ARGS="--workers 8 --seed 7"
#   make soak                      30 minutes of sysbench oltp_read_write with replicas
#                                  stopped, started and lagged (bench/soak.py)
#   make soak SOAK_MINUTES=180     a longer one; SOAK_ARGS="--threads 16"
# Reports land in bench/results/fuzz-<date>.md and soak-<date>.md. Both take the cluster lock
# (/tmp/rwproxy-integration.lock) like the benchmarks: the fuzz in turns of at most 10
# minutes, the soak for its whole duration (a test session waiting longer than 15 minutes
# gives up).

BIN          ?= .venv/bin
FUZZ_INPUTS  ?= 1000000
FUZZ_ARGS    ?=
SOAK_MINUTES ?= 30
SOAK_ARGS    ?=

.PHONY: fuzz soak

fuzz: system-deps venv ## long socket fuzz against rwproxy (FUZZ_INPUTS, default 1 M)
	FUZZ_INPUTS=$(FUZZ_INPUTS) $(BIN)/python -m tests.fuzz.run $(FUZZ_ARGS)

soak: system-deps venv bench-deps ## sysbench soak with pod faults (SOAK_MINUTES, default 30)
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)
