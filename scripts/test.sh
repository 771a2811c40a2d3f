#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks examples
# Two worker processes (pytest-xdist), each test file on one worker so its module fixtures are built once:
# the suite trains hundreds of tiny models on one torch thread each, and a second core halves its time.
# TRAINMEDIC_TEST_WORKERS=0 runs it in one process.
.venv/bin/python -m pytest -n "${TRAINMEDIC_TEST_WORKERS:-2}" --dist loadfile "$@"
