#!/bin/sh
# py-spy profile of rwproxy (writer_only, else split) under sysbench oltp_point_select, 8 threads.
# Writes the top self/inclusive functions to bench/results/<date>-profile.md and prints them.
# Extra arguments go to bench.run, e.g. `bench/profile.sh --seconds 20`.
set -eu
cd "$(dirname "$0")/.."
[ -x .venv/bin/py-spy ] || .venv/bin/python -m pip install -q py-spy
exec .venv/bin/python -m bench.run --profile-only "$@"
