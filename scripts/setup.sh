#!/usr/bin/env bash
# Creates .venv and installs trainmedic into it. torch==2.13.0 goes first: it is the CPU build available
# on this machine; installing the package first would let pip pull a multi-GB CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
# The integration extras are pinned to the same torch so they cannot pull another build of it.
echo "torch==2.13.0" > .venv/torch-constraint.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c .venv/torch-constraint.txt \
  -e ".[dev,lightning,transformers]"
