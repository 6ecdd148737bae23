"""The environment ``scripts/setup.sh`` builds is CPU-only: no CUDA torch, no nvidia/cuda/triton wheels."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_GPU_PACKAGE = re.compile(r"^(nvidia[-_].*|.*cuda.*|triton|pytorch[-_]triton.*)$", re.IGNORECASE)


@pytest.mark.integration
def test_no_gpu_distributions_and_torch_is_a_cpu_build():
    names = sorted({(d.metadata["Name"] or "").lower() for d in md.distributions()})
    gpu = [n for n in names if _GPU_PACKAGE.match(n)]
    assert gpu == [], f"GPU-only distributions installed: {gpu}"
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed (NumPy-only core)")
    import torch

    assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build (CUDA {torch.version.cuda})"
    assert not torch.backends.cudnn.is_available()


def test_setup_installs_torch_from_the_cpu_index_first_and_pins_it():
    script = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert 'CPU_INDEX="https://download.pytorch.org/whl/cpu"' in script
    assert '--index-url "$CPU_INDEX" "$TORCH"' in script
    first_torch = script.index('"$TORCH"')
    assert first_torch < script.index('-e ".[dev]"'), "torch must be installed before the package and its extras"
    assert '-c "$CONSTRAINTS"' in script, "later installs must be constrained to the torch already installed"


def test_license_is_an_spdx_string():
    lines = (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith("license")] == ['license = "MIT"']
    assert md.metadata("nudge-rag").get("License-Expression") in (None, "MIT")
