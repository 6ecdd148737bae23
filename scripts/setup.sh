#!/usr/bin/env bash
# Create .venv and install nudge-rag with every extra, both framework adapters and the test tools.
# torch's CPU build is installed first, so that nothing later pulls a CUDA torch (GBs of nvidia/triton wheels):
# PyTorch's CPU wheel index when it answers, else the plain pin (a local CPU wheel on machines that provide one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TORCH="torch==2.13.0"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -m pip install --quiet --timeout 10 --retries 0 --index-url "$CPU_INDEX" "$TORCH" 2>/dev/null; then
    echo "nudge-rag: PyTorch CPU index unreachable; installing $TORCH from the default index"
    .venv/bin/python -m pip install --quiet "$TORCH"
fi
# The constraint keeps the CPU torch just installed: a later requirement can never replace it with a CUDA build.
TORCH_NOW="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))')"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_NOW" >"$CONSTRAINTS"
.venv/bin/python -m pip install --quiet -c "$CONSTRAINTS" -e ".[dev]" \
    -e "./integrations/llama-index-nudge[test]" \
    -e "./integrations/langchain-nudge[test]"
# llama-index-vector-stores-duckdb 0.7.0 pins duckdb<1.4; the core's DuckDB store needs duckdb 1.5.5 (its VSS build):
# installed without its dependencies (the LlamaIndex DuckDB test aliases the one module it imports under an old name)
.venv/bin/python -m pip install --quiet --no-deps "llama-index-vector-stores-duckdb==0.7.0"
echo "nudge-rag: environment ready in .venv"
