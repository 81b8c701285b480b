"""Home: what the workbench does, the one-click demo, and every run with its status."""

import pandas as pd
import streamlit as st

from dashboard.components import gallery, inputs, picking, preload
from engine.core.errors import WorkbenchError
from engine.execution.quick import demo_config
from engine.execution.start import start_run
from engine.store import runs

st.title("🔬 CNN workbench")
st.markdown(
    "See inside convolutional networks while they learn: live curves, embeddings projected "
    "with **PCA, t-SNE or UMAP** at every snapshot epoch, confusion matrices, DeepDream and "
    "attributions, dynamic filters, segmentation masks improving epoch by epoch, few-shot "
    "episodes, self-supervised pretraining and transfer-learning modes side by side: the "
    "experiments of five deep-learning course assignments, each one click away. Training "
    "runs in its own process: close the tab and it keeps going. Everything here also runs "
    "from the command line (`python -m engine --help`)."
)

left, right = st.columns([1, 2])
with left:
    st.subheader("Try it")
    st.caption(
        "Trains a small CNN on scikit-learn's 1,797 handwritten digits (8×8 images, shown at "
        "16×16) on this machine, in about ten seconds on a laptop CPU."
    )
    if st.button("▶ Start the demo", type="primary", width="stretch"):
        try:
            run_dir = start_run(demo_config(), picking.runs_dir())
        except (WorkbenchError, OSError) as e:  # the page stays up; the message says why
            inputs.show_error(e)
        else:
            st.session_state["run"] = run_dir.name
            st.switch_page("views/train.py")
with right:
    st.subheader("Every experiment, one click away")
    st.caption(
        "Each card's quick demo is sized to finish in about a minute on two CPU cores (the "
        "time shown is measured on such a machine); it queues behind runs already training. "
        "The picture is the latest result of that kind here, or a preview."
    )

all_runs = runs.list_runs(picking.runs_dir())
gallery.gallery(all_runs)


def model_caption(r: runs.RunSummary) -> str:
    """The model, with what makes it a transfer or dynamic-filter run when it is one."""
    cfg = r.config or {}
    if cfg.get("kind") == "transfer":
        return f"{r.model} · {cfg.get('mode', '?')}"
    if cfg.get("kind") == "dynamic_filter":
        kind = "dynamic" if cfg.get("dynamic", True) else "static"
        return f"{kind} filters" + (" · frozen backbone" if cfg.get("freeze_backbone") else "")
    if cfg.get("kind") == "segment":
        return f"{r.model} · segmentation"
    if cfg.get("kind") == "fewshot":
        return f"{r.model} · {cfg.get('distance', '?')} distance"
    if cfg.get("kind") == "ssl":
        return f"{r.model} · BYOL (accuracy: kNN)"
    return r.model


st.subheader("Runs")
if not all_runs:
    picking.no_runs_message()
else:
    rows = []
    for r in all_runs:
        summary = r.status.get("summary") or {}
        rows.append(
            {
                "run": r.run_id,
                "status": f"{picking.STATE_ICONS.get(r.state, '')} {r.state}",
                "model": model_caption(r),
                "data": r.dataset,
                "epochs": (r.config or {}).get("epochs"),
                "best val acc": summary.get("best_val_acc", summary.get("best_val_knn_acc")),
                "test acc": summary.get("test_acc"),
                "best val mIoU": summary.get("best_val_miou"),  # segmentation runs
                "note": r.status.get("error") or r.error or "",
            }
        )
    table = pd.DataFrame(rows)
    if table["best val mIoU"].isna().all():
        table = table.drop(columns="best val mIoU")  # no segmentation runs
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "best val acc": st.column_config.NumberColumn(format="%.4f"),
            "test acc": st.column_config.NumberColumn(format="%.4f"),
            "best val mIoU": st.column_config.NumberColumn(format="%.4f"),
        },
    )
    st.caption(f"Runs folder: `{picking.runs_dir()}`")
preload.preload()  # the next page's element code, evaluated while this one is read
