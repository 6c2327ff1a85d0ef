"""`leakage_rate` and its gate: the share of what an item's answer returned (sources and
citations, by chunk id) that the item's principal may not read, never NaN; any leak fails
the gate whatever the baseline, naming the item and the chunks. End to end on a real store
with readers (real embedder, scripted model): the store enforces, so the rate is 0; with
enforcement broken on purpose the same suite scores 1.0, and the gate and the pytest plugin
fail."""

from __future__ import annotations

import json
import math

import pytest

import ragline
from ragline.access.principals import AccessError, Viewer, principals_hash
from ragline.eval.compare import GATE_PASSED, GATE_REGRESSION, _aligned, gate
from ragline.eval.datasets import DatasetError, EvalItem, load_dataset
from ragline.eval.harness import run_suite
from ragline.eval.item_metrics import check_metric_names
from ragline.eval.leakage import LEAKAGE_METRIC, leak_reasons, leakage_rate, leaked_chunks, with_leakage
from ragline.eval.runs import ItemResult, MetricSummary, RunRecord, RunStore
from ragline.eval.scores import Score
from ragline.eval.suite import GateSection, SuiteError, load_suite
from ragline.llm.fake import FakeProvider
from ragline.models import Citation, Hit

pytest_plugins = ["pytester"]
ANN = Viewer(readable=frozenset({"user:ann", "group:sales", "public"}), declared=("user:ann",))


def _hit(chunk_id: str, readers: list[str] | None) -> Hit:
    metadata = {} if readers is None else {"readers": readers}
    return Hit(document_id=f"doc-{chunk_id}", chunk_id=chunk_id, score=1.0, text="t", metadata=metadata)


def _cited(chunk_id: str, readers: list[str] | None, n: int = 1) -> Citation:
    metadata = {} if readers is None else {"readers": readers}
    return Citation(n=n, document_id=f"doc-{chunk_id}", chunk_id=chunk_id, text="t", metadata=metadata)


# --- the metric, pure ---


def test_the_rate_is_over_the_union_of_hits_and_citations_by_chunk_id():
    hits = [_hit("c1", ["group:hr"]), _hit("c2", ["public"]), _hit("c3", None), _hit("c5", ["group:sales"])]
    cited = [_cited("c1", ["group:hr"]), _cited("c4", ["user:bob"], n=2), _cited("c2", ["public"], n=3)]
    score, leaked = leakage_rate(ANN, hits, cited)
    assert leaked == ["c1", "c3", "c4"]  # c3 has no readers: nobody may read it
    assert score.ok and score.value == pytest.approx(3 / 5)  # c1 and c2 counted once each


def test_a_chunk_id_leaks_if_either_copy_excludes_the_reader():
    assert leaked_chunks(ANN, [_hit("c1", ["public"])], [_cited("c1", ["group:hr"])]) == (["c1"], 1)


def test_everything_unreadable_is_one_and_nothing_returned_is_zero():
    score, leaked = leakage_rate(ANN, [_hit("c1", ["group:hr"]), _hit("c2", [])], [_cited("c1", ["group:hr"])])
    assert score.value == 1.0 and leaked == ["c1", "c2"]
    empty, none = leakage_rate(ANN, [], [])
    assert empty.ok and empty.value == 0.0 and none == []


def test_no_principal_is_undefined_not_nan_and_an_unrestricted_viewer_reads_all():
    score, leaked = leakage_rate(None, [_hit("c1", ["group:hr"])], [])
    assert score.status == "undefined" and score.value is None and score.reason and leaked == []
    admin = Viewer(readable=None, declared=("user:root",), admin=True)
    assert leakage_rate(admin, [_hit("c1", None)], [])[0].value == 0.0
    for value in (leakage_rate(ANN, [_hit("x", None)], [])[0].value, 0.0, 1.0):
        assert value is not None and math.isfinite(value)


def test_leakage_is_added_to_a_suite_with_principals_only():
    assert with_leakage(["token_f1"], [[], ["user:ann"]]) == ["token_f1", LEAKAGE_METRIC]
    assert with_leakage(["token_f1"], [[], []]) == ["token_f1"]
    assert with_leakage([LEAKAGE_METRIC], [["user:ann"]]) == [LEAKAGE_METRIC]
    check_metric_names([LEAKAGE_METRIC])  # may be listed explicitly


# --- datasets and suites ---


def _jsonl(tmp_path, *lines: str):
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("field", "message"), [
    ('"principal": "user: ann"', "'user: ann' is malformed"),
    ('"principal": "ann"', "'ann' is malformed"),
    ('"principal": 42', "42 is malformed"),
    ('"principals": ["user:ann", "admin"]', "'admin' is malformed"),
    ('"principals": "user:ann"', "principals must be a list"),
    ('"principals": []', "principals is empty"),
])  # fmt: skip
def test_a_malformed_principal_names_the_file_and_line(tmp_path, field, message):
    path = _jsonl(tmp_path, '{"id": "ok", "question": "Q?"}', f'{{"id": "bad", "question": "Q?", {field}}}')
    with pytest.raises(DatasetError) as raised:
        load_dataset(path, "jsonl")
    assert str(raised.value).startswith(f"{path}, line 2: ") and message in str(raised.value)


def test_principal_and_principals_are_merged_sorted_and_null_is_absent(tmp_path):
    path = _jsonl(
        tmp_path,
        '{"id": "a", "question": "Q?", "principal": "user:ann", "principals": ["group:hr", "user:ann"]}',
        '{"id": "b", "question": "Q?", "principal": null, "principals": null}',
        '{"id": "c", "question": "Q?"}',
    )
    items = load_dataset(path, "jsonl").items
    assert [item.principals for item in items] == [["group:hr", "user:ann"], [], []]
    with pytest.raises(ValueError, match="malformed"):
        EvalItem(id="x", question="Q?", principals=["nobody"])


def test_a_principal_changes_the_dataset_hash(tmp_path):
    first = load_dataset(_jsonl(tmp_path, '{"id": "a", "question": "Q?", "principal": "user:ann"}'), "jsonl")
    second = load_dataset(_jsonl(tmp_path, '{"id": "a", "question": "Q?", "principal": "user:bob"}'), "jsonl")
    assert first.content_hash != second.content_hash  # a gate refuses to pair runs of other principals


def test_leakage_takes_no_floor(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(f'name = "s"\n[dataset]\npath = "x.jsonl"\n[gate]\nfloors = {{ {LEAKAGE_METRIC} = 0.0 }}\n')
    with pytest.raises(SuiteError, match="takes no floor"):
        load_suite(suite)
    assert GateSection().no_leaks is True


# --- the gate and comparisons over stored runs ---


def _item(item_id: str, *, leak=(), total: int = 2, principals=("user:ann",)) -> ItemResult:
    scores = {"token_f1": Score.of(1.0)}
    if principals:
        scores[LEAKAGE_METRIC] = Score.of(len(leak) / total)
    return ItemResult(
        item_id=item_id, question="Q?", answer="A [1]", scores=scores, principals=list(principals),
        principals_hash=principals_hash(principals) if principals else None, leaked_chunks=list(leak),
    )  # fmt: skip


def _save(store: RunStore, run_id: str, items: list[ItemResult]) -> RunRecord:
    names = sorted({name for item in items for name in item.scores})
    metrics = {n: MetricSummary(mean=None, ci_low=None, ci_high=None, coverage=1.0) for n in names}
    run = RunRecord(
        run_id=run_id, suite="s", dataset_hash="d", settings_hash="h", prompt_versions={}, models=["fake"],
        ragline_version="0", items=len(items), answered=len(items), metrics=metrics, cost_usd=0.0,
    )  # fmt: skip
    store.save(run, items)
    return run


def test_any_leak_fails_the_gate_naming_item_and_chunks_even_against_a_leaking_baseline(tmp_path):
    store = RunStore(tmp_path)
    try:
        leaky = [_item("q-hr", leak=["chunk-9", "chunk-7"]), _item("q-ok"), _item("q-anon", principals=())]
        baseline, candidate = _save(store, "base", leaky), _save(store, "cand", leaky)  # no change at all
        verdict, code = gate(store, baseline, candidate, GateSection())
        assert code == GATE_REGRESSION and not verdict["passed"]
        (reason,) = [r for r in verdict["reasons"] if r.startswith(f"{LEAKAGE_METRIC}:")]
        assert "item q-hr (as user:ann) got chunk-9, chunk-7" in reason and "q-ok" not in reason
        assert verdict["metrics"][LEAKAGE_METRIC]["verdict"] == "no significant change"
        assert gate(store, baseline, candidate, GateSection(no_leaks=False))[1] == GATE_PASSED
        clean = _save(store, "clean", [_item("q-hr"), _item("q-ok"), _item("q-anon", principals=())])
        verdict, code = gate(store, baseline, clean, GateSection())
        assert code == GATE_PASSED and verdict["metrics"][LEAKAGE_METRIC]["delta"] < 0, verdict["reasons"]
    finally:
        store.close()


def test_more_leakage_is_worse_and_never_a_new_failure_flip(tmp_path):
    from ragline.eval.compare import compare_runs

    store = RunStore(tmp_path)
    try:
        _save(store, "base", [_item(f"q{i}") for i in range(12)])
        _save(store, "cand", [_item(f"q{i}", leak=["c1", "c2"]) for i in range(12)])
        comparison = compare_runs(store, "base", "cand")
        assert comparison["metrics"][LEAKAGE_METRIC]["verdict"] == "worse" and comparison["flipped"] == []
    finally:
        store.close()


def test_the_same_id_asked_as_another_principal_is_not_paired():
    baseline = {"q": _item("q", principals=("user:ann",))}
    before, after, ids = _aligned(baseline, {"q": _item("q", principals=("user:bob",))}, "token_f1")
    assert ids == ["q"] and before[0].ok and after[0].status == "error"
    _, after, _ = _aligned(baseline, {"q": _item("q", principals=("user:ann",))}, "token_f1")
    assert after[0].ok


def test_leak_reasons_cap_what_they_list():
    items = [_item(f"q{i}", leak=[f"c{j}" for j in range(15)], total=15) for i in range(25)]
    (reason,) = leak_reasons(items)
    assert reason.startswith(f"{LEAKAGE_METRIC}: 25 item(s)") and "and 5 more items" in reason
    assert "c9 and 5 more" in reason and leak_reasons([_item("q")]) == []


# --- end to end through the real harness ---

HR_TEXT = "Salary bands 2024: engineers earn between 70,000 and 95,000 euros. Payroll runs on the 25th of each month."
PUBLIC_TEXT = "The office cafeteria opens at 8 in the morning and is closed on public holidays."
QUESTION = "What are the salary bands for engineers and when does payroll run?"


@pytest.fixture
def access_store(tmp_path, embedder):
    """A store holding one HR-only document and one public document."""
    for folder, text in (("hr", HR_TEXT), ("public", PUBLIC_TEXT)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{folder}.txt").write_text(text)
    with _open(tmp_path, embedder) as rag:
        assert rag.ingest(tmp_path / "hr", readers=["group:hr"]).added == 1
        assert rag.ingest(tmp_path / "public", readers=["public"]).added == 1
    return tmp_path


def _open(root, embedder, opener=None, **overrides):
    return (opener or ragline.open)(
        root / "store", embedder=embedder, provider=FakeProvider(lambda request: "From the sources [1]."),
        cache={"enabled": False}, retrieval={"rerank": "none"}, query={"top_k": 1},
        prompts={"dir": str(root / "prompts")}, **overrides,
    )  # fmt: skip


def _suite(root, *records: dict):
    (root / "items.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    path = root / "access.toml"
    path.write_text('name = "access"\nconcurrency = 1\n[dataset]\npath = "items.jsonl"\n'
                    '[metrics]\nnames = ["citation_validity"]\n')  # fmt: skip
    return load_suite(path)


ITEMS = (
    {"id": "ann-payroll", "question": QUESTION, "principal": "user:ann"},
    {"id": "hr-payroll", "question": QUESTION, "principals": ["group:hr"]},
    {"id": "anyone", "question": QUESTION},
)


def test_the_store_enforces_so_a_principal_gets_no_leak(access_store, embedder):
    suite = _suite(access_store, *ITEMS)
    with _open(access_store, embedder) as rag:
        run, items = run_suite(rag, suite)
    by_id = {item.item_id: item for item in items}
    ann, hr, anyone = by_id["ann-payroll"], by_id["hr-payroll"], by_id["anyone"]
    # top_k = 1: the HR document is the best match, so only a filtered search answers from the other
    assert ann.error is None and ann.sources == ann.cited == ["public.txt"]
    assert ann.scores[LEAKAGE_METRIC] == Score.of(0.0) and ann.leaked_chunks == []
    assert hr.sources == ["hr.txt"] and hr.scores[LEAKAGE_METRIC] == Score.of(0.0)
    assert anyone.sources == ["hr.txt"] and anyone.scores[LEAKAGE_METRIC].status == "undefined"
    assert ann.principals == ["user:ann"] and ann.principals_hash == principals_hash(["user:ann"])
    assert anyone.principals_hash is None
    summary = run.metrics[LEAKAGE_METRIC]
    assert summary.mean == 0.0 and summary.coverage == pytest.approx(2 / 3)
    store = RunStore(access_store / "store")
    try:
        assert store.items(run.run_id)["ann-payroll"].principals == ["user:ann"]  # stored with the item
        verdict, code = gate(store, run, run, suite.gate)
    finally:
        store.close()
    assert code == GATE_PASSED, verdict["reasons"]


class Unenforced:
    """The store's own Rag, except that it forgets who asks: enforcement broken on purpose."""

    def __init__(self, rag):
        self._rag = rag

    def __getattr__(self, name):
        return getattr(self._rag, name)

    async def arun_pipeline(self, pipeline, question, *, principals=None):
        return await self._rag.arun_pipeline(pipeline, question)


def test_broken_enforcement_scores_one_and_fails_the_gate_naming_item_and_chunk(access_store, embedder):
    suite = _suite(access_store, ITEMS[0])
    with _open(access_store, embedder) as rag:
        hr_chunks = {h.chunk_id for h in rag.retrieve(QUESTION, top_k=5, principals=["group:hr"])
                     if h.metadata.get("readers") == ["group:hr"]}  # fmt: skip
        run, (ann,) = run_suite(Unenforced(rag), suite)
    assert hr_chunks and ann.scores[LEAKAGE_METRIC] == Score.of(1.0) and set(ann.leaked_chunks) == hr_chunks
    store = RunStore(access_store / "store")
    try:
        verdict, code = gate(store, run, run, suite.gate)
    finally:
        store.close()
    assert code == GATE_REGRESSION
    (reason,) = [r for r in verdict["reasons"] if r.startswith(LEAKAGE_METRIC)]
    assert "ann-payroll" in reason and all(chunk in reason for chunk in hr_chunks)


def test_with_access_enabled_an_item_without_a_principal_is_refused_before_the_run(access_store, embedder):
    suite = _suite(access_store, ITEMS[0], ITEMS[2])
    refused = pytest.raises(AccessError, match=r"access control is enabled.*items without a principal: anyone")
    with _open(access_store, embedder, access={"enabled": True, "self_test": False}) as rag, refused:
        run_suite(rag, suite)
    assert not (access_store / "store" / "eval.sqlite").exists()  # refused before anything ran or was stored


def test_the_pytest_plugin_fails_a_leak_per_metric_and_per_item(access_store, embedder, pytester, monkeypatch):
    """In process, the store's Rag swapped for one with enforcement broken (the plugin opens
    the store itself)."""
    from contextlib import contextmanager

    real = ragline.open

    @contextmanager
    def broken(*args, **kwargs):
        with _open(access_store, embedder, opener=real) as rag:
            yield Unenforced(rag)

    monkeypatch.setattr(ragline, "open", broken)
    _suite(access_store, *ITEMS)
    suite = (access_store / "access.toml").read_text().replace('"items.jsonl"', json.dumps(str(access_store / "items.jsonl")))
    (pytester.path / "test_access.suite.toml").write_text(suite)
    common = ["-p", "no:cacheprovider", "--ragline-store", str(access_store / "store"), "-rf"]
    per_metric = pytester.runpytest_inprocess(*common)
    per_metric.assert_outcomes(passed=1, failed=1)  # citation_validity, leakage_rate
    per_metric.stdout.fnmatch_lines(["*leakage_rate: 1 item(s) got chunks*item ann-payroll (as user:ann) got *"])
    per_item = pytester.runpytest_inprocess("--ragline-per-item", *common)
    per_item.assert_outcomes(passed=2, failed=1)
    per_item.stdout.fnmatch_lines(["*item ann-payroll: leakage_rate: got *, which user:ann may not read*"])
