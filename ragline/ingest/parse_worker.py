"""A parser process: reads documents on stdin, writes what parsing made of them on stdout.

`ragline.ingest.parser_processes` starts it as `python -m ragline.ingest.parse_worker`;
it is not meant to be run by hand. Both directions carry frames: an 8-byte big-endian
length, then a pickle. The first frame out says the parser is loaded; then one
`ParseOutcome` per `(SourceItem, max_bytes)` frame in. End of input ends the process.
Libraries that print would corrupt frames, so the process's stdout is pointed at stderr
and the frames use a copy of the original descriptor.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import struct
import sys
from typing import IO, Any

_LENGTH = struct.Struct(">Q")
READY = "ready"
PARENT_VARIABLE = "RAGLINE_PARSER_PARENT"
PR_SET_PDEATHSIG = 1


def write_frame(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame's value; EOFError when the other side is gone (mid-frame included)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("end of stream")
    (length,) = _LENGTH.unpack(head)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError("end of stream inside a frame")
    return pickle.loads(data)


def _die_with_parent() -> None:
    """Linux: be killed when the ingesting process dies (kill -9 included), rather than
    parse on for nobody. It is told by the thread that started this process, which lives
    as long as this process does."""
    parent = os.environ.get(PARENT_VARIABLE)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the end of input still ends this process
        return
    if parent is not None and os.getppid() != int(parent):
        sys.exit(0)  # the parent died before the line above


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the ingesting process decides when to stop
    _die_with_parent()
    frames_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    frames_in = sys.stdin.buffer

    from unstructured.nlp.tokenize import sent_tokenize

    from ragline.failpoints import failpoint
    from ragline.ingest.loading import parse_item

    sent_tokenize("Load the sentence model now.")  # before the first document's clock starts
    write_frame(frames_out, READY)
    while True:
        try:
            item, max_bytes = read_frame(frames_in)
        except EOFError:
            return
        failpoint("parse.worker")
        write_frame(frames_out, parse_item(item, max_bytes=max_bytes))


if __name__ == "__main__":
    main()
