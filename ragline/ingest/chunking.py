"""Split a parsed document into embeddable chunks with llama-index's SentenceSplitter.

Elements are joined into one text (a title is glued to the paragraph after it), split by
paragraphs, then sentences, then words, and every chunk is mapped back to the element it
starts in: that element gives its page number and type.

Token counting and sentence splitting are pinned here. The splitter's defaults (tiktoken's
cl100k_base and NLTK data) work offline only from llama-index's bundled caches: a
TIKTOKEN_CACHE_DIR or NLTK_DATA set elsewhere sends them to the network, and a global
tokenizer set by other code would silently move every chunk boundary.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from bisect import bisect_right

from nltk.tokenize.punkt import PunktSentenceTokenizer

from ragline.ingest.config import ChunkingConfig
from ragline.ingest.context import DocumentContext, chunk_section, section_titles
from ragline.ingest.documents import PARSER_FINGERPRINT, ParsedDocument
from ragline.models import Chunk, indexed_text

# Bump when the chunk texts for the same document and config change.
CHUNKER_VERSION = "sentence/1"
# Bump when contextual headers change for the same document.
HEADER_VERSION = "header/2"
TOKENIZER_NAME = "regex-words"
CHUNK_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ragline.invalid/chunk")

_PARAGRAPH = "\n\n"
_TOKEN = re.compile(r"\w+|[^\w\s]")
# Punkt with default parameters needs no trained data (llama-index uses the same, after an
# NLTK data check that may try to download).
_PUNKT = PunktSentenceTokenizer()


def tokenize(text: str) -> list[str]:
    """Words and punctuation marks: close to BPE counts for English prose, and needs no files."""
    return _TOKEN.findall(text)


def split_sentences(text: str) -> list[str]:
    """Sentences that keep their trailing whitespace, so they concatenate back to `text`."""
    starts = [start for start, _ in _PUNKT.span_tokenize(text)]
    if not starts:
        return [text]
    starts[0] = 0
    return [text[start:end] for start, end in zip(starts, starts[1:] + [len(text)])]


def chunk_id(*, source: str, document_id: str, chunk_index: int, content_hash: str) -> str:
    """Stable across runs and machines: the same chunk of the same document keeps its id."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, "\x1f".join([source, document_id, str(chunk_index), content_hash])))


class Chunker:
    def __init__(self, config: ChunkingConfig | None = None):
        # llama-index (and, through it, httpx and torch) loads with the first Chunker, not on import.
        from llama_index.core.node_parser import SentenceSplitter

        self.config = config or ChunkingConfig()
        self._splitter = SentenceSplitter(
            chunk_size=self.config.chunk_size,
            chunk_overlap=self.config.chunk_overlap,
            tokenizer=tokenize,
            paragraph_separator=_PARAGRAPH,
            chunking_tokenizer_fn=split_sentences,
        )

    def fingerprint(self) -> str:
        """Everything that decides chunk texts; a change means stored chunks are stale."""
        headers = f";headers={HEADER_VERSION}" if self.config.context_headers else ""
        return (
            f"{PARSER_FINGERPRINT};chunker={CHUNKER_VERSION};tokenizer={TOKENIZER_NAME};"
            f"chunk_size={self.config.chunk_size};chunk_overlap={self.config.chunk_overlap}{headers}"
        )

    def chunk(self, doc: ParsedDocument, *, document_id: str, source: str) -> list[Chunk]:
        text, starts = _join(doc)
        if not text.strip():
            return []
        context = DocumentContext.of(doc, document_id=document_id)
        sections = section_titles(doc) if self.config.context_headers else []
        chunks: list[Chunk] = []
        cursor = 0
        for piece in self._splitter.split_text(text):
            offset = _locate(text, piece, cursor)
            cursor = offset + 1
            position = bisect_right(starts, offset) - 1
            element = doc.elements[position]
            index = len(chunks)
            header = context.header(chunk_section(sections[position], piece, context)) if sections else ""
            content_hash = hashlib.sha256(indexed_text(header, piece).encode("utf-8")).hexdigest()
            chunks.append(
                Chunk(
                    chunk_id=chunk_id(
                        source=source, document_id=document_id, chunk_index=index, content_hash=content_hash
                    ),
                    document_id=document_id,
                    source=source,
                    text=piece,
                    context=header,
                    chunk_index=index,
                    content_hash=content_hash,
                    metadata={
                        "document_id": document_id,
                        "source": source,
                        "title": doc.title,
                        "page_number": element.page_number,
                        "element_type": element.element_type,
                        **context.payload(),
                    },
                )
            )
        return chunks


def _join(doc: ParsedDocument) -> tuple[str, list[int]]:
    """The document as one text plus each element's start offset in it.

    Elements are separated as paragraphs, except that a title is joined to what follows
    with a single newline, so the splitter keeps a heading with its first paragraph.
    """
    parts: list[str] = []
    starts: list[int] = []
    length = 0
    for i, element in enumerate(doc.elements):
        if i:
            separator = "\n" if doc.elements[i - 1].element_type == "Title" else _PARAGRAPH
            parts.append(separator)
            length += len(separator)
        starts.append(length)
        parts.append(element.text)
        length += len(element.text)
    return "".join(parts), starts


def _locate(text: str, piece: str, cursor: int) -> int:
    """Where a chunk starts in the joined text: chunks come in order and are stripped
    substrings of it. Should a splitter change ever break that, the chunk is attributed
    to where the previous one started rather than failing the document."""
    found = text.find(piece, cursor)
    return found if found >= 0 else max(cursor - 1, 0)
