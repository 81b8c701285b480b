"""Train: start a run, then watch it live (curves + progress), stop it, resume it."""

import streamlit as st

from dashboard.components import cache, charts, gallery, inputs, picking, presenter, recipes, timing
from engine.config import (
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    parse_epoch_list,
)
from engine.core.errors import WorkbenchError
from engine.execution import launcher
from engine.execution.start import start_run
from engine.models import list_models, model_description
from engine.store import runs
from engine.store.layout import RunLayout

st.title("📈 Train")
FOCUS = presenter.focus_toggle("train")
if not FOCUS:
    recipes.show(
        "DLCV HW1 problem 1: image classification on 32x32 images",
        "Tsinghua DL HW2 task B: architectures and the ablation",
    )
    gallery.offer_if_empty("train", "image-classification run")
gallery.announce()


def start_form() -> None:
    d = RunConfig()
    with st.container():  # not a form: the estimate follows the settings as they change
        c1, c2, c3 = st.columns(3)
        dataset = c1.selectbox(
            "Dataset", inputs.datasets_offered(["digits", "folder", "prefixed", "csv", "cifar10"]),
            format_func=inputs.DATASET_LABELS.get, help="Land-cover segmentation: the Segmentation page",
        )  # fmt: skip
        path = c1.text_input(
            "Dataset folder", placeholder="/path/to/data (not needed for the digits)"
        )
        val_path = c1.text_input(
            "Validation folder (optional)", placeholder="e.g. /path/to/val_50",
            help="folder and prefixed datasets: validation images in their own folder of the "
            "same layout, instead of a part carved from the dataset folder",
        )  # fmt: skip
        model = c1.selectbox(
            "Model", list_models(), format_func=lambda m: f"{m}: {model_description(m)}"
        )
        optimizer = c2.selectbox("Optimiser", ["adam", "sgd"])
        lr = c2.number_input("Learning rate", value=d.optim.lr, format="%.5f", step=1e-4)
        schedule = c2.selectbox("Schedule", ["cosine", "multistep", "none"])
        augment = c2.checkbox("Augment (random crop + flip)", value=False)
        epochs = c3.number_input("Epochs", min_value=1, value=d.epochs)
        batch_size = c3.number_input("Batch size", min_value=1, value=d.batch_size)
        snapshot_every = c3.number_input(
            "Snapshot every k epochs", min_value=1, value=d.snapshot_every,
            help="Embeddings and the confusion matrix are saved at epoch 1, every k-th, and the last.",
        )  # fmt: skip
        seed = c3.number_input("Seed", value=0, step=1)
        n1, n2 = st.columns(2)
        name = n1.text_input("Name (optional)")
        exact = n2.text_input(
            "Snapshot exactly at epochs (optional)", placeholder="e.g. 1, 5, 10",
            help="Overrides 'every k': embeddings and confusion matrices at just these epochs.",
        )  # fmt: skip
    try:
        snapshot_epochs = parse_epoch_list(exact)
        cfg = RunConfig(
            name=name,
            data=DataConfig(
                name=dataset,
                path=inputs.typed_path(path),
                val_path=inputs.typed_path(val_path),
                augment=augment,
            ),
            model=ModelConfig(name=model),
            optim=OptimConfig(name=optimizer, lr=float(lr), schedule=schedule),
            epochs=int(epochs),
            batch_size=int(batch_size),
            seed=int(seed),
            snapshot_every=int(snapshot_every),
            snapshot_epochs=snapshot_epochs,
        )
        timing.show_estimate([cfg.validate()])
    except (WorkbenchError, OSError) as e:  # said when the button is pressed
        cfg, problem = None, e
    if not st.button("▶ Start training", type="primary"):
        return
    try:
        if cfg is None:
            raise problem
        run_dir = start_run(cfg, picking.runs_dir())
    except (WorkbenchError, OSError) as e:
        inputs.show_error(e)
        return
    st.session_state["run"] = run_dir.name
    st.toast(f"Started {run_dir.name}")


def render_run(run_dir) -> None:
    status = runs.read_status(run_dir)
    events = cache.load_metrics(run_dir)
    state = status.get("state")
    active = runs.status_is_active(status)
    st.markdown(picking.status_line(status))
    if status.get("error"):
        (st.warning if state == "stale" else st.error)(f"{state}: {status['error']}")
        log = RunLayout(run_dir).log
        if log.exists():
            with st.expander("Last lines of the run's log"):
                st.code("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    if status.get("damaged"):  # a live run whose status file has damaged fields
        st.warning(f"status.json is damaged: {status['damaged']}")
    fraction, caption = picking.progress_of(status, events)
    left = timing.time_left(events, status, run_dir)
    st.progress(fraction, text=f"{caption} · {left}" if left else caption)

    summary = status.get("summary") or {}
    val_x, val_acc = charts.epoch_series(events, "acc", "val")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Epoch", f"{val_x[-1] if val_x else 0}")
    m2.metric("Val accuracy", f"{val_acc[-1]:.2%}" if val_acc else "–")
    m3.metric("Best val accuracy", f"{max(val_acc):.2%}" if val_acc else "–")
    iv = summary.get("test_interval") if isinstance(summary.get("test_interval"), dict) else {}
    m4.metric("Test accuracy", f"{summary['test_acc']:.2%}" if "test_acc" in summary else "–",
              help=f"95% interval {iv['low']:.2%} to {iv['high']:.2%} ({iv.get('method')}, "
              f"{iv.get('n')} images)" if iv.get("low") is not None else None)  # fmt: skip
    if iv.get("low") is not None:
        m4.caption(f"95% interval {iv['low']:.2%} – {iv['high']:.2%}")

    if not events:
        st.info("Waiting for the first training steps…")
    # Drawn even before the first point, so the chart is ready and the first point shows at once.
    charts.chart(st, charts.training_curves(events), key="curves")

    b1, b2, _ = st.columns([1, 1, 4])
    if active:
        if b1.button("⏹ Stop", help="Saves last.pt, then stops; resume continues from there."):
            try:
                stopped = launcher.stop(run_dir)
            except runs.RunError as e:  # a status naming a process that is not the run's
                inputs.show_error(e)
                stopped = None
            if stopped:
                st.toast("Asked the run to stop; it saves its checkpoint first.")
            elif stopped is False:
                st.warning(f"Its process is not on this machine ({status.get('host')}) or "
                           "has already ended: stop it where it runs.")  # fmt: skip
    elif state in ("stopped", "failed") and RunLayout(run_dir).last_checkpoint.exists():
        if b2.button("⏵ Resume", help="Continue from checkpoints/last.pt"):
            try:
                inputs.check_run_data(run_dir)  # an imported run may name any folder
                launcher.launch(run_dir, resume=True)
            except (RuntimeError, ValueError, OSError) as e:  # e.g. already resumed elsewhere
                inputs.show_error(e)
            else:
                st.rerun()
    if st.session_state.get(f"active:{run_dir}") and not active:
        st.session_state[f"active:{run_dir}"] = False
        st.rerun()  # the run just ended: redraw the whole page once, static from now on
    st.session_state[f"active:{run_dir}"] = active


if not FOCUS:
    with st.expander("New run", expanded=not runs.list_runs(picking.runs_dir())):
        start_form()

run = picking.run_picker()
if run is None:
    picking.no_runs_message()
else:
    if run.error:  # config.json damaged: said once, above the run's status
        st.error(f"damaged: {run.error}")
    if run.active:
        st.fragment(run_every=0.5)(render_run)(run.path)  # live: redraws twice a second
    else:
        render_run(run.path)
