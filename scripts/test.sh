#!/usr/bin/env bash
# Sets up the environment (scripts/setup.sh) and runs the test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks examples
.venv/bin/python -m pytest "$@"
