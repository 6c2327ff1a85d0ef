"""Versioned prompt templates, so every answer can name the exact prompt that produced it.

A prompt is a Jinja2 file `NAME.j2` (or `NAME.jinja`) in a prompts folder. It may open with
a `{# ... #}` header of `key: value` lines (`description`, `variables` comma-separated), and
its `{% block system %}`, `{% block user %}` and `{% block assistant %}` blocks render, in
file order, to one chat message each; text outside blocks is ignored. Its version is a short
sha256 of the file content (line endings normalized), written `name@hash`.

`manifest.json` in the folder maps labels to versions: `{"synthesis": {"production": HASH}}`.
Every version that is used or labelled is copied to `.versions/NAME/HASH.j2`, so labels and
recorded `name@hash` versions keep rendering the exact old text after the file is edited;
commit `.versions/` and the manifest along with the prompts.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError

from ragline.llm.base import ChatMessage
from ragline.pipelines.prompt_sandbox import PromptEnvironment, render_blocks

HASH_CHARS = 12
ROLES = ("system", "user", "assistant")
SUFFIXES = (".j2", ".jinja")
MANIFEST = "manifest.json"
VERSIONS = ".versions"
BUILTIN_DIR = Path(__file__).with_name("builtin_prompts")  # packaged prompts (ragline's defaults)
MAX_PROMPT_BYTES = 256 * 1024  # prompts are a few KiB; a bigger file is a mistake, not worth compiling

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_HEX = re.compile(r"[0-9a-f]+")
_HASH = re.compile(rf"[0-9a-f]{{{HASH_CHARS}}}")
_HEADER = re.compile(r"\A\{#(.*?)#\}", re.DOTALL)
_HEADER_KEYS = ("description", "variables")

# Prompt files may come from other teams: the sandbox keeps templates away from Python
# internals, and its budget keeps one render from hanging or flooding a query.
_ENV = PromptEnvironment()


class PromptError(ValueError):
    """A prompt reference, file or render that cannot be honoured; the message says which."""


def normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def content_hash(text: str) -> str:
    return hashlib.sha256(normalize(text).encode()).hexdigest()[:HASH_CHARS]


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise PromptError(f"{value!r} is not a valid {what} (letters, digits, '_', '.', '-')")
    return value


@functools.lru_cache(maxsize=256)
def _compiled(source: str):
    """A template compiled once per source text: compiling takes milliseconds and every
    query looks its prompt up (a compiled template renders from any thread)."""
    return _ENV.compile_prompt(source)


class Prompt:
    """One exact version of a prompt template; `render` turns variables into chat messages."""

    def __init__(self, name: str, source: str) -> None:
        self.name = _check(_NAME, name, "prompt name")
        self.source = normalize(source)
        self.hash = content_hash(self.source)
        self.description, self.variables = self._header()
        try:
            self._template = _compiled(self.source)
        except TemplateSyntaxError as exc:
            raise PromptError(f"prompt {self.version}, line {exc.lineno}: {exc.message}") from None
        self.roles = tuple(self._template.blocks)
        unknown = [block for block in self.roles if block not in ROLES]
        if unknown or not self.roles:
            raise PromptError(f"prompt {self.version}: blocks must be named {', '.join(ROLES)}; got {list(self.roles)}")

    @property
    def version(self) -> str:
        return f"{self.name}@{self.hash}"

    def _header(self) -> tuple[str, tuple[str, ...]]:
        match = _HEADER.match(self.source)
        fields: dict[str, str] = {}
        for line in (match.group(1) if match else "").splitlines():
            if not line.strip():
                continue
            key, sep, value = line.partition(":")
            if not sep or key.strip() not in _HEADER_KEYS:
                raise PromptError(f"prompt {self.version}: header line {line.strip()!r} is not one of "
                                  f"{', '.join(k + ': ...' for k in _HEADER_KEYS)}")  # fmt: skip
            fields[key.strip()] = value.strip()
        variables = tuple(v.strip() for v in fields.get("variables", "").split(",") if v.strip())
        return fields.get("description", ""), variables

    def render(self, **variables: Any) -> list[ChatMessage]:
        missing = [v for v in self.variables if v not in variables]
        if missing:
            raise PromptError(f"prompt {self.version} needs variable(s) {', '.join(missing)}")
        try:
            blocks = render_blocks(self._template, self.roles, variables)
        except (UndefinedError, SecurityError) as exc:  # SecurityError includes the render limits
            raise PromptError(f"prompt {self.version}: {exc.message}") from None
        except Exception as exc:  # a template can fail in any way Python can: name the prompt, not a traceback
            raise PromptError(f"prompt {self.version} failed to render: {type(exc).__name__}: {exc}") from None
        return [ChatMessage(role=role, content=content) for role, content in blocks]

    def __repr__(self) -> str:
        return f"Prompt({self.version!r})"


def diff(a: Prompt, b: Prompt) -> str:
    """Unified diff of two prompt versions' file contents ('' when identical)."""
    lines = difflib.unified_diff(
        a.source.splitlines(keepends=True), b.source.splitlines(keepends=True), a.version, b.version
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _read_prompt(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_PROMPT_BYTES:
        raise PromptError(f"prompt file {path} is {size} bytes; the limit is {MAX_PROMPT_BYTES} bytes")
    return path.read_text(encoding="utf-8")


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across threads and processes (flock on its own descriptor)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class PromptRegistry:
    """The prompts of one folder; `get` takes `name` (the current file), `name@label` or
    `name@hash-prefix`. With `keep_versions`, every version `get` returns is stored."""

    def __init__(self, folder: Path | str, *, keep_versions: bool = True) -> None:
        self.folder = Path(folder)
        self.keep_versions = keep_versions

    # -- reading -------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every prompt with a file, a label or a stored version."""
        found = set(self.manifest())
        if self.folder.is_dir():
            found.update(p.stem for p in self.folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
        versions = self.folder / VERSIONS
        if versions.is_dir():
            found.update(p.name for p in versions.iterdir() if p.is_dir())
        return sorted(found)

    def manifest(self) -> dict[str, dict[str, str]]:
        path = self.folder / MANIFEST
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PromptError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(
            isinstance(labels, dict) and all(isinstance(h, str) for h in labels.values()) for labels in data.values()
        ):
            raise PromptError(f'{path}: expected {{"prompt name": {{"label": "hash"}}}}')
        for name, labels in data.items():  # both end up in a path under .versions/
            if not _NAME.fullmatch(name):
                raise PromptError(f"{path}: {name!r} is not a valid prompt name (letters, digits, '_', '.', '-')")
            for label, version in labels.items():
                if not _HASH.fullmatch(version):
                    raise PromptError(
                        f"{path}: label {label!r} of prompt {name!r} is {version!r}, not a version hash "
                        f"({HASH_CHARS} lower-case hex digits)"
                    )
        return data

    def labels(self, name: str) -> dict[str, str]:
        """label -> version (`name@hash`) for one prompt."""
        return {label: f"{name}@{h}" for label, h in sorted(self.manifest().get(name, {}).items())}

    def current(self, name: str) -> Prompt | None:
        """The prompt as its file reads now, or None when it has no file."""
        files = [p for p in (self.folder / f"{_check(_NAME, name, 'prompt name')}{s}" for s in SUFFIXES) if p.is_file()]
        if len(files) > 1:
            raise PromptError(f"prompt {name!r} has two files: {', '.join(p.name for p in files)}")
        return Prompt(name, _read_prompt(files[0])) if files else None

    def versions(self, name: str) -> list[str]:
        """Stored hashes of a prompt, oldest first (the current file's may not be stored yet)."""
        folder = self.folder / VERSIONS / name
        stored = sorted(folder.glob("*.j2"), key=lambda p: (p.stat().st_mtime_ns, p.stem)) if folder.is_dir() else []
        return [p.stem for p in stored]

    def get(self, ref: str) -> Prompt:
        name, _, selector = ref.partition("@")
        current = self.current(name)
        if not selector:
            if current is None:
                raise PromptError(f"no prompt {name!r}: no {name}.j2 in {self.folder}")
            prompt = current
        else:
            prompt = self._load(name, self._resolve(name, selector, current), current)
        if self.keep_versions:
            self.store(prompt)
        return prompt

    def _resolve(self, name: str, selector: str, current: Prompt | None) -> str:
        """The hash a label or hash prefix stands for (labels win over prefixes)."""
        labels = self.manifest().get(name, {})
        if selector in labels:
            return labels[selector]
        if not _HEX.fullmatch(selector):
            raise PromptError(f"prompt {name!r} has no label {selector!r} (labels: {', '.join(labels) or 'none'})")
        known = dict.fromkeys(self.versions(name) + ([current.hash] if current else []))
        matches = [h for h in known if h.startswith(selector)]
        if not matches:
            raise PromptError(f"prompt {name!r} has no version {selector!r} (known: {', '.join(known) or 'none'})")
        if len(matches) > 1:
            raise PromptError(f"{name}@{selector} is ambiguous: {', '.join(matches)}; give more characters")
        return matches[0]

    def _load(self, name: str, hash_: str, current: Prompt | None) -> Prompt:
        if current is not None and current.hash == hash_:
            return current
        path = self.folder / VERSIONS / name / f"{hash_}.j2"
        if not path.is_file():
            raise PromptError(f"version {name}@{hash_} is not stored (expected {path})")
        prompt = Prompt(name, _read_prompt(path))
        if prompt.hash != hash_:
            raise PromptError(f"{path} was edited: its content hashes to {prompt.hash}, not {hash_}")
        return prompt

    # -- writing -------------------------------------------------------------------------

    def store(self, prompt: Prompt) -> None:
        """Keep this exact version resolvable after its file changes (idempotent)."""
        path = self.folder / VERSIONS / prompt.name / f"{prompt.hash}.j2"
        if not path.exists():
            _write_atomic(path, prompt.source)

    def label(self, ref: str, label: str) -> tuple[Prompt, str | None]:
        """Point `label` at the version `ref` resolves to; returns it and the label's old version."""
        if _HEX.fullmatch(_check(_LABEL, label, "label")):
            raise PromptError(f"label {label!r} looks like a hash prefix; pick a name with other letters")
        prompt = self.get(ref)
        self.store(prompt)
        with _locked(self.folder / f".{MANIFEST}.lock"):  # two labellers must not lose each other's label
            manifest = self.manifest()
            previous = manifest.setdefault(prompt.name, {}).get(label)
            manifest[prompt.name][label] = prompt.hash
            _write_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return prompt, f"{prompt.name}@{previous}" if previous else None


def builtin_prompt(name: str) -> Prompt:
    """A prompt shipped with ragline (read-only: nothing is stored next to the package)."""
    return PromptRegistry(BUILTIN_DIR, keep_versions=False).get(name)


def find_prompt(ref: str, folder: Path) -> Prompt:
    """A prompt by `name`, `name@label` or `name@hash`: `folder` first, then ragline's
    built-in prompts for a bare name the folder does not have."""
    try:
        return PromptRegistry(folder).get(ref)
    except PromptError:
        if "@" in ref or (folder / f"{ref}.j2").exists():
            raise  # an explicit version, or a broken file of the user's: never guess
        return builtin_prompt(ref)
