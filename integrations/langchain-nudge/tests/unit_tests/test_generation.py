"""Question generation with langchain-core's fake chat models / LLMs fed realistic, varied and bad outputs."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import PromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_nudge import (
    DEFAULT_QUESTION_PROMPT,
    GeneratedQuestions,
    NudgeEmbeddings,
    QuestionGenerationError,
    QuestionList,
    agenerate_questions,
    generate_questions,
    parse_questions,
)

# What real models answer when asked for JSON questions: clean JSON, JSON in a fence after a preamble, a bare
# list, numbered lines; and the bad cases: a refusal, nothing, truncated JSON, an empty list, repeats.
GOOD = [
    '{"questions": ["What protein regulates insulin secretion in beta cells?", '
    '"How does glucose concentration affect GLP-1 release?"]}',
    'Sure! Here are two questions:\n```json\n{\n  "questions": [\n    "Which mutation causes cystic fibrosis?",\n'
    '    "What is the role of CFTR in chloride transport?"\n  ]\n}\n```\nLet me know if you need more.',
    "1. What is the prevalence of obesity among adolescents?\n2) How is BMI measured in children?",
    '["Does aspirin reduce the risk of colorectal cancer?", "What daily dose of aspirin was studied?"]',
]
BAD = [
    "I'm sorry, but I can't help with that request.",
    "",
    '{"questions": ["What causes the decline of',
    '{"questions": []}',
]
SHORT = '{"questions": ["What is BRCA1?", "what is BRCA1?", "ok"]}'


def make_docs(n: int, *, ids: bool = True) -> list[Document]:
    return [
        Document(
            id=f"doc-{i}" if ids else None, page_content=f"Abstract {i}: findings about topic {i}.", metadata={"n": i}
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            GOOD[0],
            [
                "What protein regulates insulin secretion in beta cells?",
                "How does glucose concentration affect GLP-1 release?",
            ],
        ),
        (GOOD[1], ["Which mutation causes cystic fibrosis?", "What is the role of CFTR in chloride transport?"]),
        (GOOD[2], ["What is the prevalence of obesity among adolescents?", "How is BMI measured in children?"]),
        (GOOD[3], ["Does aspirin reduce the risk of colorectal cancer?", "What daily dose of aspirin was studied?"]),
        (
            '{"questions": [{"question": "Which cells secrete insulin in the pancreas?"}]}',
            ["Which cells secrete insulin in the pancreas?"],
        ),
        ('Answer: {"question": "Which cells secrete insulin?"} Hope it helps', ["Which cells secrete insulin?"]),
        (SHORT, ["What is BRCA1?"]),
        (
            '{"questions": ["Can mice be made from \\"artificial spermatids.\\""]}',
            ['Can mice be made from "artificial spermatids."'],
        ),
        ("- \"Is the 'two-hit' model supported?\"", ["Is the 'two-hit' model supported?"]),
        (
            '{\n "questions": [\n  "What is the half-life of the drug?",\n  "How was toxicity meas',
            ["What is the half-life of the drug?"],
        ),
        (QuestionList(questions=["Is vitamin D linked to fractures?"]), ["Is vitamin D linked to fractures?"]),
        ({"questions": ["Is vitamin D linked to fractures?", 3, None]}, ["Is vitamin D linked to fractures?"]),
        (
            AIMessage(content=[{"type": "text", "text": '["Which gene is mutated in sickle cell anemia?"]'}]),
            ["Which gene is mutated in sickle cell anemia?"],
        ),
        (BAD[0], None),
        (BAD[1], None),
        (BAD[2], None),
        ("```json\nnot json\n```", None),
        (42, None),
        (BAD[3], []),
        ('{"questions": ["ok", "Questions:"]}', []),
    ],
)
def test_parse_questions(output: Any, expected: list[str] | None) -> None:
    assert parse_questions(output, 2) == expected


def test_generate_with_fake_list_chat_model_counts_failures() -> None:
    llm = FakeListChatModel(responses=GOOD + BAD + [SHORT])
    docs = make_docs(9)
    result = generate_questions(docs, llm, questions_per_document=2, batch_size=4, max_concurrency=2)
    assert isinstance(result, GeneratedQuestions)
    assert result.stats() == {
        "n_documents": 9,
        "n_succeeded": 5,
        "n_short": 1,
        "n_failed": 4,
        "n_errors": 0,
        "n_unparseable": 3,
        "n_empty": 1,
        "n_skipped": 0,
        "n_resumed": 0,
        "n_questions": 9,
        "failures": result.failures,
    }
    assert [f["document"] for f in result.failures] == ["doc-4", "doc-5", "doc-6", "doc-7"]
    assert result.pairs[0] == ("What protein regulates insulin secretion in beta cells?", "doc-0")
    assert result.pairs[-1] == ("What is BRCA1?", "doc-8")
    assert {d for _, d in result.pairs} == {"doc-0", "doc-1", "doc-2", "doc-3", "doc-8"}


def test_prompt_carries_the_document_and_count() -> None:
    seen: list[str] = []

    class Recording(FakeListChatModel):
        def _call(self, messages, *args, **kwargs):
            seen.append("\n".join(str(m.content) for m in messages))
            return super()._call(messages, *args, **kwargs)

    docs = [Document(id="x", page_content="Text with {braces} and {document} inside.")]
    generate_questions(docs, Recording(responses=[GOOD[0]]), questions_per_document=3)
    assert "Text with {braces} and {document} inside." in seen[0] and "Write 3 distinct questions" in seen[0]
    assert '{"questions": [' in seen[0]


def test_text_llm_and_custom_prompt() -> None:
    llm = FakeListLLM(responses=[GOOD[2], BAD[0], GOOD[3]])
    prompt = PromptTemplate.from_template("Passage: {document}\nWrite {num_questions} questions, one per line.")
    result = generate_questions(make_docs(3), llm, prompt=prompt)
    assert (result.n_succeeded, result.n_unparseable, result.n_questions) == (2, 1, 4)
    with pytest.raises(ValueError, match="only use the variables"):
        generate_questions(make_docs(1), llm, prompt=PromptTemplate.from_template("{document} {language}"))


def test_generic_fake_chat_model_and_documents_without_ids() -> None:
    messages = iter(
        [
            AIMessage(content=GOOD[0]),
            AIMessage(content=[{"type": "text", "text": GOOD[3]}]),
            AIMessage(content="No questions come to mind."),
        ]
    )
    docs = make_docs(3, ids=False)
    result = generate_questions(docs, GenericFakeChatModel(messages=messages), max_concurrency=1)
    assert (result.n_succeeded, result.n_unparseable) == (2, 1)
    assert result.pairs[0][1] is docs[0] and result.pairs[2][1] is docs[1]
    assert result.failures[0]["document"].startswith("<document without id")
    # generated pairs naming documents without ids fit directly
    base = DeterministicFakeEmbedding(size=12)
    w = NudgeEmbeddings(base, gamma=0.2).fit(docs, result)
    assert w.report_.n_train_questions == 4 and w.document_ids_ == [None, None, None]


class FlakyChatModel(FakeListChatModel):
    """Raises like a rate-limited API on every third call."""

    calls: int = 0

    def _call(self, *args, **kwargs):
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("429 Too Many Requests")
        return super()._call(*args, **kwargs)


def test_model_errors_are_counted_not_fatal() -> None:
    llm = FlakyChatModel(responses=[GOOD[0], GOOD[1]])
    result = generate_questions(make_docs(7), llm, batch_size=3)
    # FakeListChatModel.batch ignores return_exceptions: the failing batch is retried one document at a time
    assert result.n_errors >= 2 and result.n_succeeded >= 4
    assert result.n_succeeded + result.n_errors == 7
    assert any("429 Too Many Requests" in f["reason"] for f in result.failures)


class StructuredFake(GenericFakeChatModel):
    """A chat model with structured output: returns parsed QuestionList objects or raises a parser error."""

    answers: list[Any]

    def with_structured_output(self, schema, **kwargs):
        assert schema is QuestionList
        answers = iter(self.answers)

        def respond(prompt_value):
            answer = next(answers)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return RunnableLambda(respond)


def test_structured_output_is_used_when_available() -> None:
    llm = StructuredFake(
        messages=iter([]),
        answers=[
            QuestionList(questions=["Which receptor binds the ligand in T cells?", "How fast is the ligand cleared?"]),
            OutputParserException('Failed to parse QuestionList from completion {"questions": '),
            QuestionList(questions=[]),
            {"questions": ["Where is the enzyme expressed in the liver?"]},
        ],
    )
    result = generate_questions(make_docs(4), llm, max_concurrency=1)
    assert (result.n_succeeded, result.n_unparseable, result.n_empty, result.n_short) == (2, 1, 1, 1)
    with pytest.raises(NotImplementedError):
        generate_questions(make_docs(1), FakeListChatModel(responses=[GOOD[0]]), structured_output=True)
    plain = generate_questions(make_docs(1), FakeListChatModel(responses=[GOOD[0]]), structured_output=False)
    assert plain.n_questions == 2


def test_nothing_parseable_raises() -> None:
    llm = FakeListChatModel(responses=BAD)
    with pytest.raises(
        QuestionGenerationError, match=r"no usable question for any of 6 document.*3 unparseable, 1 empty, 2 skipped"
    ):
        generate_questions(
            make_docs(4) + [Document(id="e1", page_content="  "), Document(id="e2", page_content="")], llm
        )
    assert issubclass(QuestionGenerationError, ValueError)
    with pytest.raises(QuestionGenerationError):
        generate_questions([], llm)


async def test_async_generation() -> None:
    llm = FakeListChatModel(responses=GOOD + BAD + [SHORT])
    result = await agenerate_questions(make_docs(9), llm, batch_size=5, max_concurrency=3)
    assert (result.n_succeeded, result.n_failed, result.n_questions) == (5, 4, 9)


def test_argument_checks() -> None:
    llm = FakeListChatModel(responses=[GOOD[0]])
    for kwargs in ({"questions_per_document": 0}, {"batch_size": 0}, {"max_concurrency": True}):
        with pytest.raises(ValueError):
            generate_questions(make_docs(1), llm, **kwargs)
    with pytest.raises(TypeError, match="Document"):
        generate_questions(["plain text"], llm)
    with pytest.raises(TypeError, match="chat model"):
        generate_questions(make_docs(1), "gpt-4")
    assert set(DEFAULT_QUESTION_PROMPT.input_variables) == {"document", "num_questions"}


def test_generation_from_a_vector_store() -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    store = InMemoryVectorStore.from_documents(make_docs(2), DeterministicFakeEmbedding(size=8))
    result = generate_questions(store, FakeListChatModel(responses=[GOOD[0], GOOD[3]]))
    assert {d for _, d in result.pairs} == {"doc-0", "doc-1"}
