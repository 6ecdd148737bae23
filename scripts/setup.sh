#!/usr/bin/env bash
# Create .venv and install nudge-rag with every extra, both framework adapters and the test tools.
# torch is pinned first: an unpinned torch pulls several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[dev]" \
    -e "./integrations/llama-index-nudge[test]" \
    -e "./integrations/langchain-nudge[test]"
echo "nudge-rag: environment ready in .venv"
