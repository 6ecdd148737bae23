"""Test support shared by the three test trees (``tests/``, ``integrations/*/tests/``): real SciFact data and the
known-vector embedder core. Framework-neutral (NumPy only) and free of pytest, so subprocess workers can use it.

Importable as ``tests.support`` because ``pythonpath = ["."]`` in ``[tool.pytest.ini_options]`` puts the repository
root on ``sys.path`` during the test run.
"""

from tests.support.known_vectors import KnownVectors, sentence_model
from tests.support.scifact import (
    SCIFACT_BEIR,
    SCIFACT_VECTORS,
    SHARED_DATA,
    SciFactTexts,
    read_qrels,
    scifact_available,
)

__all__ = [
    "SCIFACT_BEIR",
    "SCIFACT_VECTORS",
    "SHARED_DATA",
    "KnownVectors",
    "SciFactTexts",
    "read_qrels",
    "scifact_available",
    "sentence_model",
]
