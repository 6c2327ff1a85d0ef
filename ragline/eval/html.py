"""`eval compare --html`: one self-contained page (inline SVG and CSS, no script, nothing
fetched) with the comparison table, each metric's score distribution for both runs, the
deltas with their confidence intervals, the version-over-version trend of the suite's stored
runs on the same data, and the items that got worse the most, with their question,
reference, both answers and the contexts cited. Every text is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from ragline.eval.runs import ItemResult, RunRecord

_BINS = 10
_COLORS = ("#8a8f98", "#2f6fde")  # baseline, candidate


def _histogram(metric: str, runs: list[tuple[str, dict[str, ItemResult]]]) -> str:
    """Share of items per score bin, both runs side by side."""
    width, height, pad = 320, 120, 20
    counts = []
    for _, items in runs:
        values = [i.scores[metric].value for i in items.values() if metric in i.scores and i.scores[metric].ok]
        bins = [0] * _BINS
        for value in values:
            bins[min(_BINS - 1, int(value * _BINS))] += 1
        counts.append([c / len(values) if values else 0.0 for c in bins])
    bar = (width - 2 * pad) / (_BINS * len(runs))
    rects = []
    for r, shares in enumerate(counts):
        for b, share in enumerate(shares):
            h = share * (height - 2 * pad)
            x = pad + (b * len(runs) + r) * bar
            rects.append(f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" '
                         f'fill="{_COLORS[r % 2]}"><title>{escape(runs[r][0])}: {share:.0%} in '
                         f'[{b / _BINS:.1f}, {(b + 1) / _BINS:.1f})</title></rect>')  # fmt: skip
    axis = f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>'
    labels = (f'<text x="{pad}" y="{height - 4}" font-size="10">0</text>'
              f'<text x="{width - pad - 6}" y="{height - 4}" font-size="10">1</text>')  # fmt: skip
    return (f'<svg class="plot distribution" role="img" aria-label="{escape(metric)} distribution" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">{axis}{"".join(rects)}{labels}</svg>')  # fmt: skip


def _deltas(metrics: dict[str, dict[str, Any]]) -> str:
    """Each metric's delta as a dot with its CI as a whisker, around a zero line."""
    rows = [(n, m) for n, m in metrics.items() if m.get("delta") is not None]
    width, row, left = 420, 26, 140
    height = row * max(1, len(rows)) + 20
    span = max([0.05, *(abs(v) for _, m in rows for v in (m["ci_low"], m["ci_high"]))])

    def x(value: float) -> float:
        return left + (value + span) / (2 * span) * (width - left - 20)

    parts = [f'<line x1="{x(0):.1f}" y1="0" x2="{x(0):.1f}" y2="{height}" stroke="#999" stroke-dasharray="3"/>']
    for i, (name, m) in enumerate(rows):
        y = 16 + i * row
        color = {"better": "#1d8a3a", "worse": "#c62828"}.get(m["verdict"], "#555")
        parts.append(f'<text x="4" y="{y + 4}" font-size="12">{escape(name)}</text>'
                     f'<line x1="{x(m["ci_low"]):.1f}" y1="{y}" x2="{x(m["ci_high"]):.1f}" y2="{y}" stroke="{color}" '
                     f'stroke-width="2"/><circle cx="{x(m["delta"]):.1f}" cy="{y}" r="4" fill="{color}">'
                     f'<title>{escape(name)}: {m["delta"]:+.3f} [{m["ci_low"]:+.3f}, {m["ci_high"]:+.3f}]</title></circle>')  # fmt: skip
    return (f'<svg class="plot deltas" role="img" aria-label="deltas with confidence intervals" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>')  # fmt: skip


def _trend(metric: str, history: list[RunRecord], marked: set[str]) -> str:
    """The metric's mean (with its CI) run after run, oldest left; the compared runs marked."""
    points = [(run, run.metrics[metric]) for run in history if metric in run.metrics and run.metrics[metric].mean is not None]
    width, height, pad = 360, 130, 22
    step = (width - 2 * pad) / max(1, len(points) - 1)

    def y(value: float) -> float:
        return height - pad - value * (height - 2 * pad)

    xs = [pad + i * step if len(points) > 1 else width / 2 for i in range(len(points))]
    line = " ".join(f"{x:.1f},{y(m.mean):.1f}" for x, (_, m) in zip(xs, points))
    parts = [f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#444"/>',
             f'<text x="2" y="{y(0) + 4:.1f}" font-size="10">0</text><text x="2" y="{y(1) + 4:.1f}" font-size="10">1</text>']  # fmt: skip
    if len(points) > 1:
        parts.append(f'<polyline points="{line}" fill="none" stroke="{_COLORS[1]}" stroke-width="1.5"/>')
    for x, (run, m) in zip(xs, points):
        if m.ci_low is not None and m.ci_high is not None:
            parts.append(f'<line x1="{x:.1f}" y1="{y(m.ci_low):.1f}" x2="{x:.1f}" y2="{y(m.ci_high):.1f}" stroke="#999"/>')
        versions = ", ".join(f"{name} {version}" for name, version in run.prompt_versions.items())
        fill = "#c62828" if run.run_id in marked else _COLORS[1]
        parts.append(f'<circle cx="{x:.1f}" cy="{y(m.mean):.1f}" r="{5 if run.run_id in marked else 3}" fill="{fill}">'
                     f'<title>{escape(run.run_id)} ({escape(versions)}): {m.mean:.3f}</title></circle>')  # fmt: skip
    return (f'<svg class="plot trend" role="img" aria-label="{escape(metric)} trend" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">{"".join(parts)}</svg>')  # fmt: skip


def _contexts(item: ItemResult | None) -> str:
    if item is None:
        return ""
    texts = item.cited_texts or [""] * len(item.cited)
    return "".join(f"<p><b>{escape(doc)}</b> {escape(text)}</p>" for doc, text in zip(item.cited, texts))


def _worst(metric: str, baseline: dict[str, ItemResult], candidate: dict[str, ItemResult], limit: int = 10) -> str:
    def value(item: ItemResult | None) -> float:
        score = item.scores.get(metric) if item else None
        return score.value if score is not None and score.ok else 0.0

    drops = sorted(((value(candidate.get(i)) - value(b), i) for i, b in baseline.items()), key=lambda d: d[0])[:limit]
    rows = []
    for delta, item_id in drops:
        if delta >= 0:
            break
        before, after = baseline[item_id], candidate.get(item_id)
        rows.append(
            f"<tr><td>{escape(item_id)}</td><td>{delta:+.3f}</td><td>{escape(before.question)}</td>"
            f"<td>{escape(before.reference or '')}</td><td>{escape(before.answer or before.error or '')}</td>"
            f"<td>{escape((after.answer or after.error or '') if after else 'missing')}</td>"
            f"<td class='contexts'>{_contexts(after)}</td></tr>"
        )
    if not rows:
        return "<p>No item got worse.</p>"
    head = ("<tr><th>item</th><th>Δ</th><th>question</th><th>reference</th><th>baseline answer</th>"
            "<th>candidate answer</th><th>cited by the candidate</th></tr>")
    return f'<table class="worst">{head}{"".join(rows)}</table>'


def comparison_page(comparison: dict[str, Any], baseline: RunRecord, candidate: RunRecord,
                    baseline_items: dict[str, ItemResult], candidate_items: dict[str, ItemResult],
                    history: list[RunRecord] = ()) -> str:  # fmt: skip
    """`history`: the suite's stored runs on the same dataset, oldest first, for the trend."""
    metrics = comparison["metrics"]
    table = "".join(
        f"<tr><td>{escape(name)}</td><td>{_fmt(m.get('baseline_mean'))}</td><td>{_fmt(m.get('candidate_mean'))}</td>"
        f"<td>{_fmt(m.get('delta'), sign=True)}</td><td>{_fmt(m.get('ci_low'), sign=True)} – {_fmt(m.get('ci_high'), sign=True)}</td>"
        f"<td>{_fmt(m.get('p_value'))}</td><td class='{escape(m['verdict'].replace(' ', '-'))}'>{escape(m['verdict'])}</td></tr>"
        for name, m in metrics.items()
    )  # fmt: skip
    runs = [(f"{baseline.run_id} (baseline)", baseline_items), (f"{candidate.run_id} (candidate)", candidate_items)]
    plots = "".join(f"<figure><figcaption>{escape(name)}</figcaption>{_histogram(name, runs)}</figure>" for name in metrics)
    first = next(iter(metrics), None)
    marked = {baseline.run_id, candidate.run_id}
    trends = "".join(f"<figure><figcaption>{escape(name)}</figcaption>{_trend(name, list(history), marked)}</figure>"
                     for name in metrics) if len(history) > 1 else "<p>Fewer than two stored runs on this dataset.</p>"  # fmt: skip

    def versions(run: RunRecord) -> str:
        return escape(", ".join(run.prompt_versions.values()))

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ragline eval {escape(candidate.suite)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:12px 0}}
td,th{{border:1px solid #ddd;padding:4px 8px;vertical-align:top;text-align:left}}figure{{display:inline-block;margin:8px}}
.contexts p{{margin:0 0 6px;max-width:40em}}.better{{color:#1d8a3a}}.worse{{color:#c62828}}.legend span{{display:inline-block;width:10px;height:10px;margin:0 4px}}</style>
</head><body>
<h1>ragline eval: {escape(candidate.suite)}</h1>
<p>baseline <code>{escape(baseline.run_id)}</code> ({versions(baseline)}) → candidate <code>{escape(candidate.run_id)}</code> ({versions(candidate)}); {candidate.items} items</p>
<table><tr><th>metric</th><th>baseline</th><th>candidate</th><th>Δ</th><th>CI</th><th>p</th><th>verdict</th></tr>{table}</table>
<h2>Deltas</h2>{_deltas(metrics)}
<h2>Trend across versions</h2><p>Each stored run of this suite on the same data, oldest left; the compared runs in red.</p>{trends}
<h2>Score distributions</h2><p class="legend"><span style="background:{_COLORS[0]}"></span>baseline<span style="background:{_COLORS[1]}"></span>candidate</p>{plots}
<h2>Items that got worse{f" ({escape(first)})" if first else ""}</h2>{_worst(first, baseline_items, candidate_items) if first else ""}
</body></html>
"""


def _fmt(value: float | None, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if sign else f"{value:.3g}"
