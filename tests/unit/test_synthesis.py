from ragline.models import Citation, Hit
from ragline.pipelines.prompts import builtin_prompt
from ragline.pipelines.synthesis import (
    attribute_citations,
    cited_numbers,
    number_sources,
    resolve_citations,
)


def _hits(n):
    return [
        Hit(document_id=f"doc{i}.md", chunk_id=f"c{i}", score=1.0 - i / 10, text=f"text {i} " * 50,
            metadata={"title": f"Doc {i}", "page_number": i if i % 2 else None})
        for i in range(1, n + 1)
    ]


def test_sources_are_numbered_in_rank_order_and_truncated():
    sources = number_sources(_hits(3), max_chars=20)
    assert [s.n for s in sources] == [1, 2, 3]
    assert [s.chunk_id for s in sources] == ["c1", "c2", "c3"]
    assert all(len(s.text) <= 20 for s in sources)


def test_prompt_shows_each_numbered_source_and_the_question():
    sources = number_sources(_hits(2), max_chars=100)
    system, user = builtin_prompt("synthesis").render(question="What is it?", sources=sources)
    assert system.role == "system" and "square brackets" in system.content
    assert "[1] (Doc 1, page 1) text 1" in system.content and "[2] (Doc 2) text 2" in system.content
    assert (user.role, user.content) == ("user", "What is it?")


def test_markers_map_to_sources_in_order_of_first_mention():
    assert cited_numbers("A [2]. B [1, 3]. C [2] and [10].") == [2, 1, 3, 10]
    sources = number_sources(_hits(3), max_chars=100)
    cited = resolve_citations("Leave is 25 days [3], see also [1][3] and [7].", sources)
    assert [(c.n, c.chunk_id) for c in cited] == [(3, "c3"), (1, "c1")]


def test_no_markers_no_citations():
    assert resolve_citations("I don't know.", number_sources(_hits(2), max_chars=10)) == []


def _source(n, text):
    return Citation(n=n, document_id=f"d{n}", chunk_id=f"c{n}", text=text)


def test_unmarked_answer_is_attributed_by_word_overlap():
    sources = [
        _source(1, "New employees get 25 days of paid leave per year, from their first day."),
        _source(2, "Every new employee gets an onboarding buddy for the first 3 months."),
        _source(3, "New employees get a laptop and 25 stickers."),
    ]
    answer = "A buddy helps for 3 months. Lunch is free on Fridays. New employees get 25 days of paid leave."
    # sentence two shares too few words with any source; order follows the answer
    assert [c.n for c in attribute_citations(answer, sources)] == [2, 1]
    assert [c.n for c in attribute_citations("Employees get an onboarding buddy.", sources)] == [2]
    assert attribute_citations("The answer is 2.", sources) == []
    assert attribute_citations("", sources) == []
