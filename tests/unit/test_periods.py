"""Periods, series and "latest" as documents and questions state them (`ragline.retrieval.periods`),
and the contextual header a chunk is indexed with (`ragline.ingest.context`)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from ragline.ingest.context import DocumentContext, chunk_section
from ragline.ingest.documents import ParsedDocument, ParsedElement
from ragline.retrieval.periods import (
    asks_for_latest,
    document_periods,
    period_end,
    question_periods,
    series_name,
)


@pytest.mark.parametrize(
    ("question", "periods"),
    [
        ("In Amazon's Q2 2023 10-Q, what were total net sales?", ["2023-Q2"]),
        ("In the second quarter of 2023, what drove net income?", ["2023-Q2"]),
        ("What did the 2023-Q1 report say?", ["2023-Q1"]),
        ("Results for Q3 FY23", ["2023-Q3"]),  # the quarter, not all of fiscal 2023
        ("Revenue in fiscal year 2022 and FY2023", ["2022", "2023"]),
        ("Compare Q4 2022 with Q1 2023", ["2022-Q4", "2023-Q1"]),
        ("What changed since 2021?", []),  # a plain year names no filing
        ("Which 10-Q mentions Q-clearance?", []),
        ("For the quarter ended June 30, 2023, what were sales?", []),  # calendar dates are not fiscal periods
    ],
)
def test_questions_name_periods_only_in_explicit_quarter_and_fiscal_year_forms(question, periods):
    assert question_periods(question) == periods


def test_documents_take_periods_from_name_and_title_and_plain_years_from_the_name_only():
    assert document_periods("2023 Q2 AMZN.pdf", "AMAZON.COM, INC. FORM 10-Q For the Quarterly Period Ended June 30, 2023") == [
        "2023", "2023-Q2",
    ]  # fmt: skip
    assert document_periods("handbook-2023_v2.pdf", None) == ["2023"]
    assert document_periods("handbook.pdf", "Handbook, revised 2023") == []
    assert document_periods("notes.md", "Fiscal 2024 plan") == ["2024"]


def test_versions_of_a_document_share_a_series_name():
    assert series_name("2023 Q2 AMZN.pdf") == series_name("2022 Q3 AMZN.pdf") == "amzn"
    assert series_name("policies/leave-policy-v2.pdf") == series_name("policies/leave_policy_2024.pdf")
    assert series_name("policies/leave-policy-v2.pdf") != series_name("archive/leave-policy-v2.pdf")
    assert series_name("2023 Q2 AAPL.pdf") != series_name("2023 Q2 AMZN.pdf")


@pytest.mark.parametrize(
    ("question", "latest"),
    [
        ("What was the gross margin in the latest 10-Q?", True),
        ("From the most recent report, what is the tax rate?", True),
        ("How does R&D in the most recent quarter compare to previous quarters?", False),  # looks back
        ("Summarise the latest trends across the quarters", False),
        ("In the latest Q2 2023 filing, what were sales?", False),  # a named period decides
        ("What were net sales?", False),
    ],
)
def test_latest_means_the_newest_version_only_when_the_question_does_not_look_back(question, latest):
    assert asks_for_latest(question) is latest


def test_a_period_ends_on_its_last_day_and_quarters_order_before_their_year():
    assert period_end(["2023", "2023-Q1"]) == datetime(2023, 3, 31, tzinfo=timezone.utc)
    assert period_end(["2022-Q4", "2023-Q2"]) == datetime(2023, 6, 30, tzinfo=timezone.utc)
    assert period_end(["2021"]) == datetime(2021, 12, 31, tzinfo=timezone.utc)
    assert period_end([]) is None


def _doc(title: str | None, **fields) -> ParsedDocument:
    return ParsedDocument(
        path=Path("x"), title=title, elements=[ParsedElement(text="t", element_type="NarrativeText")], **fields
    )


def test_the_header_names_title_subject_date_and_section_and_the_payload_what_the_name_states():
    filed = datetime(2023, 8, 4, 10, 5, tzinfo=timezone.utc)
    context = DocumentContext.of(
        _doc("Apple Inc.", subject="Form 10-Q", date=filed), document_id="10q/2023 Q3 AAPL.pdf"
    )
    assert context.header("Net sales") == "Apple Inc. | Form 10-Q | dated 2023-08-04\nNet sales"  # not the file name
    assert context.payload() == {"periods": ["2023", "2023-Q3"], "series": "aapl",
                                 "document_date": "2023-08-04T10:05:00+00:00"}  # fmt: skip
    record = DocumentContext.of(_doc("Vitamin D and bone density"), document_id="10009203")  # a dataset record id
    assert record.header(None) == "Vitamin D and bone density" and record.payload() == {}
    undated = DocumentContext.of(_doc(None), document_id="2023 Q1 acme.md")
    assert undated.payload()["document_date"] == "2023-03-31T00:00:00+00:00"  # the period's end orders it


def test_a_section_is_repeated_only_where_the_chunk_does_not_start_with_it():
    context = DocumentContext.of(_doc("Handbook"), document_id="handbook.md")
    assert chunk_section("Leave", "Leave\nTwenty-five days.", context) is None
    assert chunk_section("Leave", "Carry-over is capped.", context) == "Leave"
    assert chunk_section("Handbook", "Anything.", context) is None  # the title says it already
