"""What a call costs, and the most it can cost before it is made.

Budgets reserve the worst case before each call, so the prompt-token count used there must
never be below the real one. Without an exact local count (`LLMProvider.count_prompt_tokens`)
the bound is the prompt's UTF-8 byte count plus chat-template overhead: byte-level BPE and
byte-fallback SentencePiece tokenizers never emit fewer than one byte per token.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from ragline.llm.base import ChatRequest, LLMProvider
from ragline.models import Usage

# Tokens a chat template may add around each message, and once around the conversation.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_FIXED = 16


class Price(BaseModel):
    """USD per million tokens, as providers publish them."""

    input_per_million: float = Field(0.0, ge=0.0)
    output_per_million: float = Field(0.0, ge=0.0)

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.input_per_million
            + usage.completion_tokens * self.output_per_million
        ) / 1_000_000

    @property
    def free(self) -> bool:
        return self.input_per_million == 0 and self.output_per_million == 0


def prompt_tokens_upper_bound(provider: LLMProvider, request: ChatRequest) -> int:
    exact = provider.count_prompt_tokens(request)
    if exact is not None:
        return exact
    text_bytes = sum(len(m.content.encode("utf-8")) for m in request.messages)
    return text_bytes + TEMPLATE_TOKENS_PER_MESSAGE * len(request.messages) + TEMPLATE_TOKENS_FIXED


def worst_case_usage(provider: LLMProvider, request: ChatRequest) -> Usage:
    """The largest usage this call can be billed for: the whole prompt and max_tokens out."""
    return Usage(
        prompt_tokens=prompt_tokens_upper_bound(provider, request),
        completion_tokens=request.max_tokens,
    )
