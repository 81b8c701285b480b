"""Runs: every run in one table (filter, sort, select), the selected runs' curves on one chart,
and what to do with one run: title and tags, re-run, clone and edit, export, delete. A run
exported from another machine is imported here too."""

import tempfile
import zlib
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.components import cache, charts, inputs, picking
from engine.core.errors import WorkbenchError
from engine.data.roots import check_data_path
from engine.execution.start import start_run
from engine.sharing import archive
from engine.store import catalogue, runs
from engine.store.layout import RunLayout

st.title("🗂️ Runs")


def import_form() -> None:
    with st.expander("Import a run (.zip made by Export here or `python -m engine export RUN "
                     "--format zip`)"):  # fmt: skip
        upload = st.file_uploader("Run zip", type=["zip"], key="import_zip")
        if upload is None or not st.button("Import", key="import_go"):
            return
        from engine.sharing.archive import unpack_upload

        try:  # zipfile needs a file it can seek: a private temporary copy, removed at once
            run_dir = unpack_upload(upload.getvalue(), upload.name, picking.runs_dir())
        except (ValueError, RuntimeError, OSError) as e:
            inputs.show_error(e)
            return
        st.success(f"Imported {upload.name} as run {run_dir.name}.")


def start_config(text: str) -> None:
    """A new run of this config's JSON, launched; the error, if any, shown."""
    try:
        # Checked as any new run is: its data and weights too, before a folder is made.
        new = start_run(catalogue.config_from_text(text, check_data_path), picking.runs_dir())
    except (WorkbenchError, OSError) as e:
        inputs.show_error(e)
    else:
        st.session_state["run"] = new.name
        st.success(f"Started {new.name}: follow it on the Train page.")


rows = catalogue.run_rows(picking.runs_dir())
if not rows:
    picking.no_runs_message()
    import_form()
    st.stop()

# --- the table ---------------------------------------------------------------------------
f1, f2, f3 = st.columns([2, 2, 3])
kinds = f1.multiselect("Kind", sorted({r["kind"] for r in rows}), placeholder="every kind")
states = f2.multiselect("State", sorted({r["state"] for r in rows}), placeholder="every state")
query = f3.text_input("Search", placeholder="id, title, model, data or tag")
words = query.lower().split()
shown = [
    r for r in rows
    if (not kinds or r["kind"] in kinds) and (not states or r["state"] in states)
    and all(any(w in str(r[k]).lower() for k in ("run", "title", "model", "data", "tags"))
            for w in words)
]  # fmt: skip
st.caption(f"{len(shown)} of {len(rows)} runs. Click a column to sort; tick runs to overlay "
           "their curves; tick one for its actions.")  # fmt: skip
table = pd.DataFrame([{k: v for k, v in r.items() if k != "path"} for r in shown])
if table.empty:
    st.info("No run matches these filters.")
    st.stop()
table.insert(0, "", [picking.STATE_ICONS.get(s, "•") for s in table["state"]])
# The selection is by position: a table that shows other runs (a filter, a run deleted or
# added) gets a new key, so a ticked position never lands on another run, and starts with
# the runs that were ticked before, wherever they are now.
shown_ids = [r["run"] for r in shown]
key = f"runs_table:{zlib.crc32(chr(10).join(shown_ids).encode()):08x}"
st.session_state["runs_table_key"] = key
if key not in st.session_state:
    ticked = st.session_state.get("runs_ticked", [])
    rows_now = [shown_ids.index(i) for i in ticked if i in shown_ids]
    st.session_state[key] = {"selection": {"rows": rows_now, "columns": []}}
event = st.dataframe(
    table, hide_index=True, on_select="rerun", selection_mode="multi-row", key=key,
    column_config={
        "best val": st.column_config.NumberColumn(format="%.4f"),
        "test": st.column_config.NumberColumn(format="%.4f"),
        "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "duration s": st.column_config.NumberColumn("duration (s)", format="%.0f"),
    },
)  # fmt: skip
picked = [shown[i] for i in event.selection.rows if i < len(shown)] if event else []
st.session_state["runs_ticked"] = [r["run"] for r in picked]

# --- curves of the selected runs -----------------------------------------------------------
if picked:
    st.subheader(f"Curves of {len(picked)} run{'s' if len(picked) > 1 else ''}")
    events = {r["run"]: cache.load_metrics(r["path"]) for r in picked}
    names = sorted({m for ev in events.values() for m in catalogue.metric_names(ev)})
    if not names:
        st.info("These runs have no metrics yet.")
    else:
        c1, c2, c3 = st.columns([2, 2, 3])
        default = next((m for m in ("acc/val", "miou/val", "knn_acc/val", "loss/val")
                        if m in names), names[0])  # fmt: skip
        metric = c1.selectbox("Metric", names, index=names.index(default))
        x_axis = c2.radio("x axis", catalogue.X_AXES, horizontal=True,
                          format_func={"step": "step", "epoch": "epoch",
                                       "time": "wall time (s)"}.get)  # fmt: skip
        weight = c3.slider("Smoothing", 0.0, 0.99, 0.0, 0.01,
                           help="TensorBoard's: an exponential moving average, debiased")  # fmt: skip
        fig = go.Figure()
        for i, r in enumerate(picked):
            x, y = catalogue.curve(events[r["run"]], metric, x_axis, weight)
            colour = charts.PALETTE[i % len(charts.PALETTE)]
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if len(x) < 60 else "lines",
                                     name=r["title"] or r["run"], line=dict(color=colour)))  # fmt: skip
        fig.update_layout(
            height=420, margin=dict(l=10, r=10, t=30, b=10), yaxis_title=metric,
            xaxis_title={"time": "seconds since the run's first event"}.get(x_axis, x_axis),
            legend=dict(orientation="h", y=-0.2), uirevision="runs",
        )  # fmt: skip
        charts.chart(st, fig, key="runs_curves", name=f"{metric}-by-{x_axis}")

# --- one run: title, tags, re-run, clone, export, delete ------------------------------------
if len(picked) == 1:
    r = picked[0]
    run_dir = r["path"]
    st.subheader(f"{r['run']}" + (f" · {r['title']}" if r["title"] else ""))
    t_meta, t_rerun, t_export, t_delete = st.tabs(
        ["Title & tags", "Re-run / clone", "Export", "Delete"]
    )
    with t_meta, st.form("meta"):
        status = runs.read_status(run_dir)
        title = st.text_input("Title", status.get("title") or "",
                              help="shown instead of the config's name; the run id stays")  # fmt: skip
        tags = st.text_input("Tags", ", ".join(status.get("tags") or []),
                             placeholder="baseline, lr-sweep")  # fmt: skip
        if st.form_submit_button("Save"):
            try:
                catalogue.set_title(run_dir, title)
                catalogue.set_tags(run_dir, tags)
            except ValueError as e:
                inputs.show_error(e)
            else:
                st.rerun()
    with t_rerun:
        try:
            text = catalogue.config_text(run_dir)
        except ValueError as e:
            inputs.show_error(e)
            text = None
        if text is not None:
            if st.button("⟳ Re-run with the same config", help="a new run folder; this one "
                         "stays as it is"):  # fmt: skip
                start_config(text)
            with st.form("clone"):
                edited = st.text_area("Clone and edit the config (JSON)", text, height=320)
                if st.form_submit_button("▶ Start the edited config"):
                    start_config(edited)
    with t_export:
        from engine.sharing import archive, export

        layout = RunLayout(run_dir)
        stem = archive.safe_file_name(r["run"])

        def file_bytes(write) -> bytes:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out"
                write(out)
                if out.is_dir():  # a folder (the projector's): zipped
                    return export.folder_zip_bytes(out, f"{stem}-projector")
                return out.read_bytes()

        st.download_button("⬇ metrics (CSV)", on_click="ignore", mime="text/csv",
                           data=lambda: file_bytes(lambda o: export.export_metrics(run_dir, o)),
                           file_name=f"{stem}-metrics.csv")  # fmt: skip
        epochs = layout.embedding_epochs()
        if epochs:
            epoch = st.select_slider("Embedding snapshot epoch", epochs, value=epochs[-1])
            try:  # checked now: a download's data is made after the click, where no error shows
                export.snapshot(run_dir, epoch)
            except ValueError as e:
                inputs.show_error(e)
                epochs = []
        if epochs:
            e1, e2, e3 = st.columns(3)
            try:  # thumbnails come from the run's data folder: only under the data roots
                inputs.check_run_data(run_dir)
                sprite = True
            except ValueError:
                sprite = False
            e1.download_button(
                "⬇ TensorBoard projector (.zip)", on_click="ignore", mime="application/zip",
                data=lambda: file_bytes(
                    lambda o: export.export_projector(run_dir, o, epoch, sprite=sprite)
                ),
                file_name=f"{stem}-projector-epoch{epoch}.zip",
                help="tensors.tsv, metadata.tsv, sprite.png, projector_config.pbtxt: unzip, "
                "then `tensorboard --logdir FOLDER`, or load the two .tsv files at "
                "projector.tensorflow.org",
            )  # fmt: skip
            e2.download_button("⬇ embeddings (.npz)", on_click="ignore",
                               data=lambda: file_bytes(lambda o: export.export_npz(run_dir, o, epoch)),
                               file_name=f"{stem}-epoch{epoch}.npz")  # fmt: skip
            e3.download_button("⬇ embeddings (CSV)", on_click="ignore", mime="text/csv",
                               data=lambda: file_bytes(lambda o: export.export_csv(run_dir, o, epoch)),
                               file_name=f"{stem}-epoch{epoch}.csv")  # fmt: skip
        with_checkpoints = st.checkbox("Include checkpoints in the run zip", value=True)
        st.download_button(
            "⬇ the whole run (.zip)", on_click="ignore", mime="application/zip",
            data=lambda: file_bytes(lambda o: archive.pack_run(run_dir, o, with_checkpoints)),
            file_name=f"{stem}.zip", help="import it on another machine's Runs page, or with "
            "`python -m engine import FILE`",
        )  # fmt: skip
    with t_delete:
        if runs.status_is_active(runs.read_status(run_dir)):
            st.info("Stop it first (Train page): an active run cannot be deleted.")
        else:
            sure = st.checkbox(f"Yes, delete {r['run']} and everything in its folder")
            if st.button("🗑 Delete", disabled=not sure, type="primary"):
                try:
                    runs.delete_run(run_dir)
                except (RuntimeError, OSError) as e:
                    inputs.show_error(e)
                else:
                    st.toast(f"Deleted {r['run']}")
                    st.rerun()
elif len(picked) > 1:
    st.caption("Tick a single run for its title, tags, re-run, export and delete.")

import_form()
