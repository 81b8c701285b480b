"""A comparison group's statistics on a page: each row's test score with its 95% interval and
every seed's value, a chart with error bars, and each pair's paired test (engine.analysis)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.components import charts
from dashboard.components.cache import file_stamp
from engine.analysis.comparison import (
    GroupStatistics,
    RowStats,
    group_statistics,
    interval_text,
)
from engine.store.groups import Group, load_group
from engine.store.layout import RunLayout

REPEAT_CHOICES = (1, 3, 5)
REPEATS_HELP = (
    "Runs per row, seeds 0, 1, ... on the same split. One run: each score gets an interval "
    "over its test images. Three or more: the mean ± a 95% interval over seeds, and rows are "
    "compared seed against seed."
)


def repeats_input(container) -> int:
    """The form's 'Repeats' choice (1, 3 or 5)."""
    return int(container.selectbox("Repeats (seeds per row)", REPEAT_CHOICES, help=REPEATS_HELP))


@st.cache_data(show_spinner=False, max_entries=32)
def _computed(group_id: str, root: str, stamps: tuple) -> GroupStatistics:
    return group_statistics(load_group(group_id, root), Path(root))


def _stamps(group: Group, root: Path) -> tuple:
    """What the statistics depend on: every run's outcomes file (absent: (0, 0))."""
    out = []
    for rid in (rid for row in group.rows for rid in row.run_ids):
        path = RunLayout(root / rid).test_outcomes
        out.append((rid, file_stamp(path) if path.exists() else (0, 0)))
    return tuple(out)


def _chart(rows: list[RowStats], name: str) -> go.Figure:
    done = [r for r in rows if r.interval is not None]
    scale = 1.0 if done and done[0].kind == "miou" else 100.0
    unit = "" if scale == 1.0 else " (%)"
    fig = go.Figure()
    for i, r in enumerate(done):
        iv, colour = r.interval, charts.PALETTE[i % len(charts.PALETTE)]
        error = None
        if iv.low is not None:
            error = dict(type="data", symmetric=False, array=[(iv.high - iv.value) * scale],
                         arrayminus=[(iv.value - iv.low) * scale], thickness=1.5, width=8)  # fmt: skip
        fig.add_scatter(x=[r.label], y=[iv.value * scale], error_y=error, mode="markers",
                        marker=dict(color=colour, size=14, symbol="diamond"), name=r.label,
                        showlegend=False,
                        hovertemplate=f"{r.label}<br>{interval_text(r)}<extra></extra>")  # fmt: skip
        fig.add_scatter(
            x=[r.label] * r.n, y=[v * scale for v in r.values], mode="markers",
            marker=dict(color="black", size=7, symbol="circle-open"), showlegend=False,
            customdata=list(range(r.n)),
            hovertemplate=f"{r.label}<br>seed +%{{customdata}}: %{{y:.2f}}<extra></extra>",
        )  # fmt: skip
    fig.update_layout(
        title=f"{name}{unit}: diamond the score, whiskers its 95% interval, circles one seed "
        "each", height=360, margin=dict(l=10, r=10, t=40, b=10),
    )  # fmt: skip
    return fig


def _score_table(rows: list[RowStats], name: str, kind: str) -> None:
    st.dataframe(
        pd.DataFrame([{
            "row": r.label,
            name: interval_text(r),
            "seeds": r.n,
            "each seed": ", ".join(f"{v:.2%}" if kind != "miou" else f"{v:.4f}" for v in r.values),
            "interval": r.interval.method if r.interval else "",
            **({"note": r.problem if r.interval else ""} if any(
                r.problem and r.interval for r in rows) else {}),
        } for r in rows]),
        hide_index=True, width="stretch",
    )  # fmt: skip


def show_group_statistics(group: Group, root: Path, key: str) -> None:
    """The statistics section of a comparison: nothing until a row has a finished run."""
    s = _computed(group.group_id, str(root), _stamps(group, root))
    if s.kind is None:
        return
    rows, pairs, kind, name = s.rows, s.pairs, s.kind, s.score_name
    if s.every_rate:  # a learning-rate grid: compare each combination at its chosen rate
        with st.expander(f"Every learning rate ({len(s.every_rate)} rows)"):
            _score_table(s.every_rate, name, kind)
        st.caption("Per combination, the learning rate with the best validation accuracy "
                   "(the test set never chooses); the rows below compare those.")  # fmt: skip
    st.markdown(f"**{name.capitalize()}, with 95% intervals**")
    _score_table(rows, name, kind)
    if any(r.interval is not None for r in rows):
        charts.chart(st, _chart(rows, name), key=f"stats:{key}")
    tested = [v for v in pairs if v.test is not None]
    if tested:
        st.markdown("**Which differences are real?** Paired tests on the same test items; "
                    "p-values Holm-adjusted over the table's pairs.")  # fmt: skip
        st.dataframe(
            pd.DataFrame([{
                "pair": f"{v.a}  vs  {v.b}",
                "difference": (f"{v.test.difference * 100:+.2f} points" if kind != "miou"
                               else f"{v.test.difference:+.4f}") if v.test else "",
                "verdict": v.verdict,
                "test": f"{v.test.method}" + (f" ({v.test.detail})" if v.test.detail else "")
                if v.test else "",
            } for v in tested]),
            hide_index=True, width="stretch",
        )  # fmt: skip
    if untested := [v for v in pairs if v.test is None]:
        st.caption(f"{len(untested)} pair(s) not compared: {untested[0].problem} (e.g. "
                   f"{untested[0].a} vs {untested[0].b}).")  # fmt: skip
    if all(r.n <= 1 for r in rows if r.outcomes):
        st.caption("One run per row: intervals are over test items only, not over training "
                   "seeds. Start the comparison with Repeats 3 or 5 to see how much the seed "
                   "alone moves each score.")  # fmt: skip
