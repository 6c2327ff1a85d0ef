"""Grounded answer synthesis: numbered sources in, an answer whose [n] markers map to chunks out."""

from __future__ import annotations

import re

from ragline.llm.base import ChatRequest, Completion
from ragline.models import Answer, Citation, Hit

NO_SOURCES_ANSWER = "No indexed document matches this question, so there is nothing to answer from."
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def number_sources(hits: list[Hit], max_chars: int) -> list[Citation]:
    """Give each retrieved chunk its source number (1-based) in the order shown to the model."""
    return [
        Citation(
            n=n,
            document_id=hit.document_id,
            chunk_id=hit.chunk_id,
            text=hit.text[:max_chars],
            metadata=hit.metadata,
        )
        for n, hit in enumerate(hits, start=1)
    ]


def cited_numbers(answer: str) -> list[int]:
    """The source numbers an answer cites, in order of first mention (`[1]`, `[2, 3]`)."""
    seen: list[int] = []
    for match in _MARKER.finditer(answer):
        for number in match.group(1).split(","):
            n = int(number)
            if n not in seen:
                seen.append(n)
    return seen


def resolve_citations(answer: str, sources: list[Citation]) -> list[Citation]:
    """Map the answer's [n] markers to the numbered sources; markers with no source are dropped."""
    by_number = {source.n: source for source in sources}
    return [by_number[n] for n in cited_numbers(answer) if n in by_number]


_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_STOPWORDS = frozenset(
    "the and for are was were with that this from have has had not but you your our their its "
    "they them can will would should could into than then there these those what which who how "
    "when where why all any per also about been being does did".split()
)


def _content_words(text: str) -> set[str]:
    """Lower-cased words minus stopwords, with a plural 's' dropped ('days' matches 'day')."""
    words = {word.lower() for word in _WORD.findall(text)}
    return {
        w[:-1] if len(w) > 3 and w.endswith("s") else w
        for w in words
        if (len(w) > 2 or w.isdigit()) and w not in _STOPWORDS
    }


def attribute_citations(answer: str, sources: list[Citation], min_share: float = 0.6) -> list[Citation]:
    """Citations for an answer that has no [n] markers (small models rarely write them).

    Each sentence goes to the best-ranked source containing the largest share of its
    content words, when that share is at least `min_share`; otherwise it stays uncited.
    """
    source_words = [(source, _content_words(source.text)) for source in sources]
    cited: list[Citation] = []
    for sentence in _SENTENCE_END.split(answer):
        words = _content_words(sentence)
        if not words:
            continue
        best, share = max(
            ((source, len(words & vocabulary) / len(words)) for source, vocabulary in source_words),
            key=lambda pair: pair[1],
            default=(None, 0.0),
        )
        if best is not None and share >= min_share and best not in cited:
            cited.append(best)
    return cited


def compose_answer(done: Completion, sources: list[Citation], request: ChatRequest) -> Answer:
    """The Answer for a completion over numbered sources: [n] markers resolved, or citations
    attributed by word overlap when the model wrote none."""
    text = done.text.strip()
    citations = resolve_citations(text, sources)
    attributed = not citations
    if attributed:
        citations = attribute_citations(text, sources)
    return Answer(
        text=text, citations=citations, citations_attributed=attributed and bool(citations),
        sources=sources, model=done.model, usage=done.usage, cost_usd=done.cost_usd, trace_id="",
        provider=done.provider, cached=done.cached, attempts=done.attempts, prompt_version=request.prompt_version,
    )  # fmt: skip


def no_sources_answer() -> Answer:
    """What a query answers when retrieval found nothing: no model call is made."""
    return Answer(text=NO_SOURCES_ANSWER, model="none", trace_id="")
