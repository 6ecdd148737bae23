"""Fixtures for the langchain-nudge tests (see ``_support.py`` for the data, the model and the fake LLM)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

_NAME = "langchain_nudge_test_support"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("_support.py"))
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
support = sys.modules[_NAME]


@pytest.fixture(scope="session")
def sup() -> Any:
    """The test support module (data loader, embeddings, fake models, helpers)."""
    return support


@pytest.fixture(scope="session")
def scifact() -> Any:
    if not support.data_available():
        pytest.skip(f"SciFact data not found under {support.SHARED}")
    return support.SciFact()


@pytest.fixture
def minilm(scifact) -> Any:
    """The real model, serving the precomputed SciFact vectors for corpus texts and claims."""
    return support.MiniLMEmbeddings(scifact.known)
