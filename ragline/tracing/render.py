"""A trace for people: a rich tree for the terminal, a standalone HTML waterfall for sharing.

The HTML page has no script and no external asset: each span is a `<details>` row whose bar
sits at its start offset with its duration as width; clicking a row opens its attributes and
events, hovering shows the essentials.
"""

from __future__ import annotations

import html
from typing import Any

from rich.text import Text
from rich.tree import Tree

from ragline.tracing.store import SpanNode, Trace


def _duration(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


def _facts(node: SpanNode) -> list[str]:
    """The few attributes worth a glance: model, tokens, cost, cache, attempts, hits."""
    a = node.attributes
    facts = []
    model = a.get("gen_ai.response.model")
    if model and not node.name.endswith(f" {model}"):  # the fallback model that answered
        facts.append(str(model))
    if "gen_ai.usage.input_tokens" in a:
        facts.append(f"{a['gen_ai.usage.input_tokens']}→{a.get('gen_ai.usage.output_tokens', 0)} tok")
    if a.get("ragline.cost_usd"):
        facts.append(f"${a['ragline.cost_usd']:.6f}")
    if a.get("ragline.cache.hit"):
        facts.append("cache hit")
    if a.get("ragline.attempts", 0) > 1:
        facts.append(f"{a['ragline.attempts']} attempts")
    for prefix in ("ragline.retrieval", "ragline.rerank"):
        if f"{prefix}.count" in a:
            facts.append(f"{a[f'{prefix}.count']} hits")
    if a.get("ragline.prompt.version"):
        facts.append(f"prompt {str(a['ragline.prompt.version'])[:12]}")
    return facts


def _label(node: SpanNode, origin_ns: int) -> Text:
    text = Text()
    text.append(node.name, style="bold red" if node.status == "ERROR" else "bold")
    text.append(f"  {_duration(node.duration_ms)}", style="cyan")
    text.append(f"  +{_duration((node.start_ns - origin_ns) / 1e6)}", style="dim")
    if facts := _facts(node):
        text.append("  " + " · ".join(facts), style="green")
    if node.status == "ERROR":
        text.append(f"  {node.status_message or 'error'}", style="red")
    return text


def trace_tree(trace: Trace) -> Tree:
    """The span tree with durations, start offsets, tokens and cost."""
    s = trace.summary
    head = Text(f"trace {s.trace_id}", style="bold")
    head.append(
        f"  {s.start:%Y-%m-%d %H:%M:%S} UTC · {_duration(s.duration_ms)} · {s.span_count} spans"
        f" · {s.total_tokens} tokens · ${s.cost_usd:.6f}",
        style="dim",
    )
    tree = Tree(head)
    origin = min(root.start_ns for root in trace.roots)

    def add(parent: Tree, node: SpanNode) -> None:
        branch = parent.add(_label(node, origin))
        for child in node.children:
            add(branch, child)

    for root in trace.roots:
        add(tree, root)
    return tree


_CSS = """
:root { --name: 34%; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #57606a; margin-bottom: 18px; }
.meta b { color: #1f2328; }
.axis, summary { display: flex; align-items: center; }
.axis { color: #57606a; font-size: 12px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.axis .label, .name { width: var(--name); flex: none; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.ticks, .track { position: relative; flex: 1; height: 18px; }
.ticks span { position: absolute; transform: translateX(-50%); }
.ticks span:first-child { transform: none; }
.ticks span:last-child { transform: translateX(-100%); }
details { border-bottom: 1px solid #f0f2f4; }
details[open] { background: #f6f8fa; }
summary { list-style: none; cursor: pointer; padding: 3px 0; }
summary::-webkit-details-marker { display: none; }
summary:hover { background: #eef1f4; }
.track { background: repeating-linear-gradient(90deg, transparent 0 calc(25% - 1px), #eaeef2 calc(25% - 1px) 25%); }
.bar { position: absolute; top: 3px; height: 12px; border-radius: 3px; min-width: 2px; background: #8c959f; }
.dur { position: absolute; top: 0; font-size: 12px; color: #57606a; white-space: nowrap; margin-left: 6px; padding: 0 3px;
       background: rgba(255, 255, 255, .75); border-radius: 3px; }
.chat .bar { background: #8250df; } .retrieve .bar { background: #0969da; }
.rerank .bar { background: #1a7f37; } .error .bar { background: #cf222e; }
.error .name { color: #cf222e; } .cached .bar { background: repeating-linear-gradient(45deg, #8250df 0 4px, #c297ff 4px 8px); }
.facts { color: #57606a; font-size: 12px; margin-left: 6px; }
.detail { padding: 6px 12px 12px calc(var(--depth) * 18px + 12px); }
table { border-collapse: collapse; font-size: 12px; }
td { padding: 2px 10px 2px 0; vertical-align: top; }
td:first-child { color: #57606a; white-space: nowrap; }
td code { white-space: pre-wrap; word-break: break-all; }
h4 { margin: 10px 0 4px; font-size: 12px; }
.legend span { display: inline-block; margin-right: 14px; font-size: 12px; color: #57606a; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
"""


def _value(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def _table(attributes: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td><code>{html.escape(_value(value))}</code></td></tr>"
        for key, value in sorted(attributes.items())
    )
    return f"<table>{rows}</table>" if rows else ""


def _hits(attributes: dict[str, Any]) -> str:
    """A retrieve/rerank step's results as a ranked table rather than parallel arrays."""
    tables = []
    for prefix in ("ragline.retrieval", "ragline.rerank"):
        ids = attributes.get(f"{prefix}.document_ids") or []
        chunks = attributes.get(f"{prefix}.chunk_ids") or [""] * len(ids)
        scores = attributes.get(f"{prefix}.scores") or [""] * len(ids)
        rows = "".join(
            f"<tr><td>{rank}</td><td>{html.escape(str(doc))}</td><td>{html.escape(str(chunk))}</td><td>{score}</td></tr>"
            for rank, (doc, chunk, score) in enumerate(zip(ids, chunks, scores, strict=False), 1)
        )
        if rows:
            tables.append(f"<h4>hits</h4><table><tr><td>#</td><td>document</td><td>chunk</td><td>score</td></tr>{rows}</table>")
    return "".join(tables)


def _kind(node: SpanNode) -> str:
    classes = []
    if node.attributes.get("gen_ai.operation.name"):
        classes.append("chat")
    elif node.name in ("retrieve", "rerank"):
        classes.append(node.name)
    if node.attributes.get("ragline.cache.hit"):
        classes.append("cached")
    if node.status == "ERROR":
        classes.append("error")
    return " ".join(classes)


def _row(node: SpanNode, depth: int, origin: int, total: int) -> str:
    left = (node.start_ns - origin) / total * 100
    width = (node.end_ns - node.start_ns) / total * 100
    facts = " · ".join(_facts(node))
    hover = f"{node.name} · {_duration(node.duration_ms)} · +{_duration((node.start_ns - origin) / 1e6)}"
    events = "".join(
        f"<h4>{html.escape(e['name'])} <span class='facts'>+{_duration((e['time_ns'] - origin) / 1e6)}</span></h4>"
        + _table(e.get("attributes", {}))
        for e in node.events
    )
    status = f"<p class='error'><b>{html.escape(node.status_message or 'error')}</b></p>" if node.status == "ERROR" else ""
    return (
        f"<details class='{_kind(node)}' style='--depth:{depth}'>"
        f"<summary title='{html.escape(hover + (' · ' + facts if facts else ''))}'>"
        f"<span class='name' style='padding-left:{depth * 18}px'>{html.escape(node.name)}"
        f"<span class='facts'>{html.escape(facts)}</span></span>"
        f"<span class='track'><span class='bar' style='left:{left:.3f}%;width:{width:.3f}%'></span>"
        f"<span class='dur' style='left:{min(left + width, 88):.3f}%'>{_duration(node.duration_ms)}</span></span>"
        f"</summary><div class='detail'>{status}"
        f"<h4>span {node.span_id} · {node.kind.lower()} · {node.status.lower()}</h4>"
        f"{_hits(node.attributes)}<h4>attributes</h4>{_table(node.attributes)}{events}</div></details>"
    )


def trace_html(trace: Trace) -> str:
    """A standalone HTML waterfall page (inline CSS, no scripts, no external assets)."""
    s = trace.summary
    spans = trace.spans()
    origin = min(node.start_ns for _, node in spans)
    total = max(max(node.end_ns for _, node in spans) - origin, 1)
    ticks = "".join(f"<span style='left:{p}%'>{_duration(total / 1e6 * p / 100)}</span>" for p in (0, 25, 50, 75, 100))
    rows = "".join(_row(node, depth, origin, total) for depth, node in spans)
    legend = "".join(
        f"<span><i style='background:{color}'></i>{name}</span>"
        for name, color in (("chat", "#8250df"), ("retrieve", "#0969da"), ("rerank", "#1a7f37"),
                            ("other", "#8c959f"), ("error", "#cf222e"))
    )  # fmt: skip
    status = "<b style='color:#cf222e'>error</b>" if s.error else "ok"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(s.root_name)} · trace {s.trace_id[:8]}</title><style>{_CSS}</style></head>"
        f"<body><h1>{html.escape(s.root_name)}</h1>"
        f"<div class='meta'>trace <b>{s.trace_id}</b> · {s.start:%Y-%m-%d %H:%M:%S} UTC · "
        f"<b>{_duration(s.duration_ms)}</b> · {s.span_count} spans · <b>{s.total_tokens}</b> tokens "
        f"({s.input_tokens} in, {s.output_tokens} out) · <b>${s.cost_usd:.6f}</b> · {status}</div>"
        f"<div class='legend'>{legend}</div>"
        f"<div class='axis'><span class='label'>span (click for attributes)</span><span class='ticks'>{ticks}</span></div>"
        f"{rows}</body></html>"
    )
