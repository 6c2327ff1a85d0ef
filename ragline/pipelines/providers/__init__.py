"""LLM providers: one protocol (`LLMProvider`) and one small client per wire protocol:
OpenAI-compatible chat completions, Anthropic Messages, Ollama native, and in-process
llama.cpp. Importing this package never loads llama-cpp-python; that happens on first use."""

from ragline.pipelines.providers.anthropic import AnthropicProvider
from ragline.pipelines.providers.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    ErrorKind,
    LLMProvider,
    ProviderError,
    StreamChunk,
    StreamInterrupted,
    classify,
    parse_retry_after,
)
from ragline.pipelines.providers.http_common import HttpProvider
from ragline.pipelines.providers.llamacpp import LlamaCppProvider, bundled_gguf_path
from ragline.pipelines.providers.ollama import OllamaProvider
from ragline.pipelines.providers.openai import OpenAIProvider

__all__ = [
    "AnthropicProvider",
    "ChatMessage",
    "ChatRequest",
    "Completion",
    "ErrorKind",
    "HttpProvider",
    "LLMProvider",
    "LlamaCppProvider",
    "OllamaProvider",
    "OpenAIProvider",
    "ProviderError",
    "StreamChunk",
    "StreamInterrupted",
    "bundled_gguf_path",
    "classify",
    "parse_retry_after",
]
