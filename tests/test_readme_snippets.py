"""Every code block of the READMEs runs as written, on the real data, offline.

The fenced blocks of :data:`READMES` are found by file and line (test ids such as ``README.md:52``, the line of
the opening fence). A ```python block runs as a script and a ```bash block with ``bash -euo pipefail``, each in a
fresh subprocess (``sys.executable``; the venv's ``bin`` first on ``PATH``, so ``nudge-rag`` and ``python`` are
this environment's), in an empty working directory, with ``HF_HUB_OFFLINE=1`` and ``NUDGE_RAG_DATA_DIR`` set to
the shared data; the test asserts exit status 0.

One HTML comment on the line right above an opening fence changes that (nothing else is read):

- ``<!-- snippet: continues -->``: run after the previous block of the same file, in the same working directory;
  consecutive python blocks of such a chain run as one script (a later block sees the earlier one's names).
- ``<!-- snippet: skip: REASON -->``: not run; the test is reported as skipped with REASON.

Any other block (another language tag, an untagged fence, an unknown directive) fails
``test_every_block_is_run_or_skipped``: a README cannot gain a block that is silently left unchecked.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
READMES = ("README.md", "integrations/llama-index-nudge/README.md", "integrations/langchain-nudge/README.md")
RUNNABLE = ("python", "bash")
TIMEOUT_S = 900  # per chain; the slowest (LlamaIndex over an on-disk Qdrant) takes ~2 minutes on 2 shared cores

#: Library bugs a snippet exposes, until fixed: (file, a line of the chain's code) -> reason. Strict xfail, so the
#: run fails once the bug is fixed and the entry must go.
KNOWN_BUGS: dict[tuple[str, str], str] = {}

_FENCE = re.compile(r"^```(.*)$")
_DIRECTIVE = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language tag, its code and the directive above it ('' if none)."""

    file: str
    line: int
    lang: str
    code: str
    directive: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        return self.directive[len("skip:") :].strip() if self.directive.startswith("skip:") else None


def parse_blocks(text: str, file: str) -> list[Block]:
    """The fenced blocks of a Markdown text, in order (fences at column 0; an unclosed fence is an error)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1).strip()
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        d = _DIRECTIVE.match(prev.strip())
        i += 1
        while i < len(lines) and lines[i].rstrip() != "```":
            i += 1
        if i == len(lines):
            raise ValueError(f"{file}:{start + 1}: code fence is never closed")
        blocks.append(Block(file, start + 1, lang, "\n".join(lines[start + 1 : i]) + "\n", d.group(1) if d else ""))
        i += 1
    return blocks


def problems(blocks: list[Block]) -> list[str]:
    """Why each block that is neither run nor explicitly skipped is so (empty when every block is covered)."""
    out = []
    for n, b in enumerate(blocks):
        if b.directive and b.directive != "continues" and b.skip_reason is None:
            out.append(f"{b.where}: unknown directive {b.directive!r} (use 'continues' or 'skip: REASON')")
        elif b.skip_reason == "":
            out.append(f"{b.where}: 'skip:' needs a reason")
        elif b.skip_reason is None and b.lang not in RUNNABLE:
            out.append(f"{b.where}: a ```{b.lang} block is neither run (```python, ```bash) nor skipped")
        elif b.directive == "continues" and (n == 0 or blocks[n - 1].skip_reason is not None):
            out.append(f"{b.where}: 'continues' needs a run block right before it in the file")
    return out


def chains(blocks: list[Block]) -> list[list[Block]]:
    """Blocks grouped into what runs together: a block plus the blocks that continue it."""
    out: list[list[Block]] = []
    for b in blocks:
        if b.directive == "continues" and out:
            out[-1].append(b)
        else:
            out.append([b])
    return out


def _all_blocks() -> list[Block]:
    return [b for f in READMES for b in parse_blocks((ROOT / f).read_text(encoding="utf-8"), f)]


def _chain_params() -> list:
    params = []
    for chain in chains(_all_blocks()):
        head = chain[0]
        marks = [pytest.mark.skip(reason=f"{head.where}: {head.skip_reason}")] if head.skip_reason else []
        code = "".join(b.code for b in chain)
        marks += [
            pytest.mark.xfail(reason=reason, strict=True)
            for (file, line), reason in KNOWN_BUGS.items()
            if head.file == file and line in code
        ]
        params.append(pytest.param(chain, id=head.where, marks=marks))
    return params


# ---------------------------------------------------------------------------------------------- coverage (fast)
def test_every_block_is_run_or_skipped():
    blocks = _all_blocks()
    assert blocks, "no code blocks found"
    assert problems(blocks) == []
    for file, line in KNOWN_BUGS:  # an entry that matches no block would hide nothing and mean nothing
        assert any(b.file == file and line in b.code for b in blocks), (file, line)
    assert sum(b.lang == "python" for b in blocks) >= 5  # the parser sees the python blocks


@pytest.mark.parametrize(
    "markdown, complaint",
    [
        pytest.param("```py\nprint(1)\n```\n", "```py block is neither run", id="py-tag"),
        pytest.param("```\nprint(1)\n```\n", "``` block is neither run", id="untagged"),
        pytest.param("<!-- snippet: maybe -->\n```python\nx = 1\n```\n", "unknown directive 'maybe'", id="unknown"),
        pytest.param("<!-- snippet: skip: -->\n```python\nx = 1\n```\n", "needs a reason", id="no-reason"),
        pytest.param("<!-- snippet: continues -->\n```python\nx = 1\n```\n", "needs a run block", id="orphan"),
    ],
)
def test_an_unchecked_block_is_reported(markdown, complaint):
    text = "# t\n\n" + markdown
    fence_line = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("```"))
    found = problems(parse_blocks(text, "X.md"))
    assert len(found) == 1 and complaint in found[0] and found[0].startswith(f"X.md:{fence_line}:"), found


def test_directives_and_chains_are_parsed():
    text = (
        "```python\na = 1\n```\n\n<!-- snippet: continues -->\n```python\nprint(a)\n```\n\n"
        "<!-- snippet: skip: installs packages -->\n```bash\npip install x\n```\n"
    )
    blocks = parse_blocks(text, "X.md")
    assert [(b.line, b.lang, b.directive) for b in blocks] == [
        (1, "python", ""),
        (6, "python", "continues"),
        (11, "bash", "skip: installs packages"),
    ]
    assert problems(blocks) == [] and blocks[2].skip_reason == "installs packages"
    assert [[b.line for b in c] for c in chains(blocks)] == [[1, 6], [11]]
    with pytest.raises(ValueError, match="X.md:1: code fence is never closed"):
        parse_blocks("```python\nx = 1\n", "X.md")


# ---------------------------------------------------------------------------------------------- running them
def _workdir(tmp_path: Path) -> Path:
    """An empty working directory; on tmpfs when there is one (Qdrant's local mode commits every point to
    SQLite separately: on a disk each commit waits for an fsync)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        import tempfile

        return Path(tempfile.mkdtemp(prefix="nudge-readme-", dir=shm))
    return tmp_path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        NUDGE_RAG_DATA_DIR=str(SHARED_DATA),
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("PYTHONPATH", None)  # the snippets import the installed packages, as a user's script does
    return env


def _run(chain: list[Block], cwd: Path) -> None:
    steps: list[tuple[str, list[Block]]] = []
    for b in chain:
        if steps and steps[-1][0] == b.lang == "python":
            steps[-1][1].append(b)
        else:
            steps.append((b.lang, [b]))
    for lang, group in steps:
        where = ", ".join(b.where for b in group)
        code = "\n".join(b.code for b in group)
        if lang == "python":
            script = cwd / f"snippet_{group[0].line}.py"
            script.write_text(code, encoding="utf-8")
            cmd = [sys.executable, str(script)]
        else:
            cmd = ["bash", "-euo", "pipefail", "-c", code]
        try:
            done = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{where}: did not finish in {TIMEOUT_S} s")
        assert done.returncode == 0, f"{where} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("chain", _chain_params())
def test_readme_snippet_runs_as_written(chain, tmp_path):
    if not (SHARED_DATA / "beir" / "scifact").is_dir():
        pytest.skip(f"the README snippets use the shared SciFact data, not found under {SHARED_DATA}")
    cwd = _workdir(tmp_path)
    try:
        _run(chain, cwd)
    finally:
        if cwd != tmp_path:
            import shutil

            shutil.rmtree(cwd, ignore_errors=True)
