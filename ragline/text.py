"""The text policy at ragline's edges (paths keep their bytes, text gets U+FFFD): questions (and other free text) from argv, files or
callers may carry lone surrogates (undecodable bytes smuggled in by Python's
surrogateescape, or broken input); tokenizers, SQLite and JSON reject them."""

from __future__ import annotations

import os


def valid_unicode(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (valid text passes unchanged)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def path_text(path: str | os.PathLike[str]) -> str:
    """A path as valid UTF-8 text: undecodable bytes of its name shown as backslash escapes
    (`caf\\xe9.txt`), so ids, messages and `--json` stay valid while the path itself keeps
    its bytes for opening."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
