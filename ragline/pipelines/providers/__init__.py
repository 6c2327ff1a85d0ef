"""LLM providers: one protocol (`LLMProvider`), an OpenAI-compatible HTTP client, and in-process
llama.cpp. Importing this package never loads llama-cpp-python; that happens on first use."""

from ragline.pipelines.providers.base import (
    ChatMessage,
    Completion,
    LLMProvider,
    ProviderError,
    StreamChunk,
)
from ragline.pipelines.providers.llamacpp import LlamaCppProvider, bundled_gguf_path
from ragline.pipelines.providers.openai import OpenAIProvider

__all__ = [
    "ChatMessage",
    "Completion",
    "LLMProvider",
    "LlamaCppProvider",
    "OpenAIProvider",
    "ProviderError",
    "StreamChunk",
    "bundled_gguf_path",
]
