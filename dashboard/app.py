"""Entry point: `streamlit run dashboard/app.py`. Pages live in dashboard/views/, not pages/:
a pages/ folder beside the script switches on Streamlit's older page discovery, which ran a
deep link's first request without this script (no navigation, no wide layout)."""

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="CNN workbench", page_icon="🔬", layout="wide")

PAGES = Path("views")  # st.Page resolves it against this script's folder
nav = st.navigation(
    [
        st.Page(PAGES / "home.py", title="Home", icon="🏠", default=True),
        st.Page(PAGES / "train.py", title="Train", icon="📈"),
        st.Page(PAGES / "runs.py", title="Runs", icon="🗂️"),
        st.Page(PAGES / "embeddings.py", title="Embeddings", icon="🌌"),
        st.Page(PAGES / "confusion.py", title="Confusion matrix", icon="🧮"),
        st.Page(PAGES / "transfer.py", title="Transfer", icon="🔁"),
        st.Page(PAGES / "inside.py", title="Inside the network", icon="🔭"),
        st.Page(PAGES / "dynamic.py", title="Dynamic filters", icon="🎛️"),
        st.Page(PAGES / "segmentation.py", title="Segmentation", icon="🗺️"),
        st.Page(PAGES / "fewshot.py", title="Few-shot", icon="🧩"),
        st.Page(PAGES / "ssl.py", title="Self-supervised", icon="🪞"),
        st.Page(PAGES / "longtail.py", title="Long tail", icon="🦎"),
    ]
)
from dashboard.components.cache import warm_imports  # noqa: E402
from engine.analysis.umap_kernels import start_warmup  # noqa: E402
from engine.execution.worker import prewarm  # noqa: E402

prewarm()  # a warm process waits for the next run: its first live point comes ~2 s sooner
start_warmup()  # UMAP's numba kernels compile (or load from disk) before the first UMAP
warm_imports()  # torch and the data code, before the first click that starts a run
nav.run()
