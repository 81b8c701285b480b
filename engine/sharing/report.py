"""A comparison group (transfer modes, ablation, A-E grid, long tail, ...) as one HTML page:
its table, its curves and each run's config, with plotly.js inside so the page opens
offline and its charts stay interactive."""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.core.atomic import write_bytes
from engine.store import runs
from engine.store.groups import Group, comparison_table

COLUMNS = [  # (key in comparison_table's rows, heading, format)
    ("label", "setting", "{}"),
    ("state", "state", "{}"),
    ("trainable_params", "trainable params", "{:,}"),
    ("total_params", "total params", "{:,}"),
    ("seconds_per_epoch", "s / epoch", "{:.2f}"),
    ("epochs", "epochs", "{}"),
    ("best_val_acc", "best val acc", "{:.2%}"),
    ("test_acc", "test acc", "{:.2%}"),
    ("best_val_miou", "best val mIoU", "{:.4f}"),
    ("test_miou", "test mIoU", "{:.4f}"),
    ("run", "run", "{}"),
]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]  # fmt: skip


def _cell(value, fmt: str) -> str:
    if value is None or value == "":
        return "–"
    try:
        return html.escape(fmt.format(value))
    except (ValueError, TypeError):
        return html.escape(str(value))


def table_html(table: list[dict]) -> str:
    used = [c for c in COLUMNS if any(r.get(c[0]) not in (None, "") for r in table)]
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in used)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(k), f)}</td>" for k, _, f in used) + "</tr>"
        for r in table
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def curves_figure(table: list[dict], events: dict[str, list[dict]]) -> go.Figure:
    """Validation score and loss per epoch, one colour per row."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation score", "loss"))
    for i, row in enumerate(table):
        ev = events.get(row.get("run") or "", [])
        colour = PALETTE[i % len(PALETTE)]
        score = "miou" if any(e["name"] == "miou" for e in ev) else "acc"
        for col, (name, split, dash) in ((1, (score, "val", None)), (2, ("loss", "val", None)),
                                         (2, ("loss", "train_epoch", "dot"))):  # fmt: skip
            pts = [(e["epoch"], e["value"]) for e in ev
                   if e["name"] == name and e.get("split") == split and e.get("value") is not None]  # fmt: skip
            if not pts:
                continue
            fig.add_trace(go.Scatter(
                x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                name=f"{row['label']} · {name} {split}", legendgroup=row["label"],
                line=dict(color=colour, dash=dash),
            ), row=1, col=col)  # fmt: skip
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.25))  # fmt: skip
    return fig


def group_report(group: Group, runs_dir: str | Path | None = None) -> str:
    """The whole page as a string."""
    root = Path(runs_dir) if runs_dir else runs.default_runs_dir()
    table = comparison_table(group, root)
    events = {r["run"]: runs.read_metrics(root / r["run"]) for r in table
              if r.get("run") and (root / r["run"]).is_dir()}  # fmt: skip
    parts = [f"<h2>Results</h2>{table_html(table)}", statistics_html(group, root)]
    if group.preset == "a-e":
        from engine.experiments.ae_grid import ae_table

        parts.append("<h2>The A–E grid</h2>" + table_html_any(ae_table(group, root)))
    chart = curves_figure(table, events).to_html(full_html=False, include_plotlyjs=True)
    parts.append(f"<h2>Curves</h2>{chart}")
    configs = []
    for r in table:
        if r.get("run") and (root / r["run"]).is_dir():
            try:
                text = runs.load_config(root / r["run"]).to_json()
            except ValueError as e:
                text = f"(config unreadable: {e})"
            configs.append(f"<details><summary>{html.escape(r['label'])} · "
                           f"{html.escape(r['run'])}</summary><pre>{html.escape(text)}</pre>"
                           "</details>")  # fmt: skip
    parts.append("<h2>Configs</h2>" + "".join(configs))
    created = datetime.fromtimestamp(group.created).strftime("%Y-%m-%d %H:%M")
    title = html.escape(f"{group.name} ({group.preset})")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}pre{{background:#f6f6f6;padding:8px}}</style>
</head><body><h1>{title}</h1>
<p>Group {html.escape(group.group_id)}, created {created}; report written
{datetime.now():%Y-%m-%d %H:%M} by the CNN workbench.</p>
{"".join(parts)}
</body></html>
"""


def statistics_html(group: Group, root: Path) -> str:
    """Each row's test score with its 95% interval and every pair's paired test, as on the
    pages (engine.analysis.comparison)."""
    from engine.analysis.comparison import group_statistics, interval_text

    s = group_statistics(group, root)  # a learning-rate grid: each combination's chosen rate
    if s.kind is None:
        return ""
    name = s.score_name
    scores = table_html_any([{
        "row": r.label, f"{name} (95% interval)": interval_text(r), "seeds": r.n,
        "each seed": ", ".join(f"{v:.4f}" for v in r.values),
    } for r in s.rows])  # fmt: skip
    pairs = [v for v in s.pairs if v.test is not None]
    verdicts = table_html_any([{
        "pair": f"{v.a} vs {v.b}", "verdict": v.verdict,
        "test": v.test.method + (f" ({v.test.detail})" if v.test.detail else ""),
    } for v in pairs]) if pairs else ""  # fmt: skip
    return f"<h2>{html.escape(name.capitalize())}, with 95% intervals</h2>{scores}" + (
        f"<h3>Paired tests (Holm-adjusted over the table)</h3>{verdicts}" if pairs else ""
    )


def table_html_any(rows: list[dict]) -> str:
    """A table of whatever columns `rows` have (the A-E grid's own)."""
    if not rows:
        return "<p>(empty)</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)

    def fmt(v) -> str:
        return "{:.4f}" if isinstance(v, float) else "{}"

    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(k), fmt(r.get(k)))}</td>" for k in keys) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_group_report(group: Group, out: str | Path, runs_dir: str | Path | None = None) -> Path:
    out = Path(out)
    write_bytes(out, group_report(group, runs_dir).encode())
    return out
