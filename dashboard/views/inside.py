"""Inside the network: what a layer's units respond to (DeepDream, activation maximisation)
and why the network predicted what it did (Captum attributions), for a run's checkpoint or
a pretrained backbone."""

import hashlib
import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from dashboard.components import cache, charts, gallery, inputs, picking, pictures, recipes
from engine.analysis.attribution import METHOD_LABELS, METHODS, attribute, overlay
from engine.analysis.dream import activation_maximisation, deep_dream
from engine.analysis.layers import default_cam_layer, list_layers
from engine.data.images import preprocess
from engine.models.backbones import BACKBONES
from engine.store import runs
from engine.store.layout import RunLayout

MAX_UPLOAD_MB = pictures.MAX_UPLOAD_MB
SAMPLE_PHOTOS = ("china.jpg", "flower.jpg")  # shipped inside scikit-learn: offline

st.title("🔭 Inside the network")
st.caption(
    "What do a layer's units respond to, and why did the network predict what it did? "
    "DeepDream grows a layer's patterns out of a photo; activation maximisation paints, from "
    "noise or from the photo, the image that makes one channel fire most; attribution maps (Captum) show which "
    "pixels the prediction rests on."
)
recipes.show("Tsinghua DL HW2 task A: looking inside the network")
gallery.announce(until_ready=True)
gallery.offer_if_empty("inside", "trained network to look inside")


def model_of(source: str, key: str, stamp: int):
    # `stamp`: the checkpoint's mtime, so a rewritten best.pt is loaded again.
    return cache.imagenet_model(key) if source == "backbone" else cache.run_model(key, stamp)


@st.cache_data(show_spinner=False, max_entries=16)
def layers_of(source: str, key: str, stamp: int):
    lm = model_of(source, key, stamp)
    return list_layers(lm.model, lm.image_size)


def image_to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def sample_photo(name: str) -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    return torch.from_numpy(load_sample_image(name).copy()).permute(2, 0, 1)


# --- choose a model -------------------------------------------------------------------------
# Segmentation, few-shot and self-supervised runs are looked at on their own pages.
finished = [
    r
    for r in runs.list_runs(picking.runs_dir())
    if RunLayout(r.path).best_checkpoint.exists() and picking.classifies_images(r)
]
c1, c2 = st.columns([1, 2])
source = c1.radio(
    "Model", ["backbone", "run"], horizontal=True,
    format_func={"backbone": "Pretrained backbone", "run": "A run's best checkpoint"}.get,
    index=0 if not finished else 1,
)  # fmt: skip
if source == "run":
    if not finished:
        c2.info("No run has a checkpoint yet; start one on the Home or Train page.")
        st.stop()
    by_id = {r.run_id: r for r in finished}
    run_id = picking.remembered_select(
        "Run", list(by_id), "run", lambda i: picking.run_label(by_id[i]), where=c2
    )
    key = str(by_id[run_id].path)
    stamp = RunLayout(by_id[run_id].path).best_checkpoint.stat().st_mtime_ns
else:
    usable = [n for n, spec in BACKBONES.items() if spec.weights_available()]
    key = c2.selectbox(
        "Backbone (with its ImageNet classifier)", usable,
        help="Others appear once their weights are cached: python -m engine weights fetch NAME",
    )  # fmt: skip
    stamp = 0
try:
    lm = model_of(source, key, stamp)
    layers = layers_of(source, key, stamp)
except inputs.LOAD_ERRORS as e:  # a damaged checkpoint, missing weights: say so, keep the page up
    inputs.show_error(e)
    st.stop()

# --- choose an image --------------------------------------------------------------------------
c1, c2 = st.columns([1, 2])
choices = (["dataset"] if source == "run" else ["photo"]) + ["upload"]
origin = c1.radio(
    "Image", choices, horizontal=True,
    format_func={"dataset": "From the run's dataset", "photo": "Sample photo",
                 "upload": "Upload"}.get,
)  # fmt: skip
raw = None
if origin == "upload":
    upload = c2.file_uploader(f"An image (png, jpg; up to {MAX_UPLOAD_MB} MB)", type=None)
    if upload is None:
        st.info("Upload an image to look at it through the network.")
        st.stop()
    try:
        raw = pictures.read_image_upload(upload, MAX_UPLOAD_MB)
    except ValueError as e:
        inputs.show_error(e)
        st.stop()
elif origin == "photo":
    raw = sample_photo(c2.selectbox("Photo", SAMPLE_PHOTOS))
else:
    try:
        data = cache.dataset(json.dumps(runs.load_config(key).data.__dict__, sort_keys=True))
    except inputs.LOAD_ERRORS as e:
        inputs.show_error(e)
        st.stop()
    split = data.test
    i = c2.number_input(f"Test image (0 … {len(split) - 1})", 0, len(split) - 1, 0)
    raw = split.images[int(i)]
    c2.caption(f"true class: **{lm.classes[int(split.labels[int(i)])]}**")
image = preprocess(raw, lm.image_size)  # (3, S, S) in [0, 1]
image_key = hashlib.sha1(image.numpy().tobytes()).hexdigest()
scale = max(1, 224 // lm.image_size)  # small inputs are shown enlarged, pixels kept sharp

tab_attr, tab_dream, tab_grid = st.tabs(
    ["Attribution", "DeepDream & activation maximisation", "Channel grid"]
)


@st.cache_data(show_spinner="Computing attributions…", max_entries=32)
def attributions(source, key, stamp, image_key, target, _image):
    m = model_of(source, key, stamp)
    return attribute(m.model, _image, m.mean, m.std, target=target)


with tab_attr:
    probs = lm.predict(image).numpy()
    top = np.argsort(-probs)[:5]
    c1, c2 = st.columns([1, 2])
    c1.image(pictures.png_bytes(image_to_uint8(image), scale=scale), caption=lm.name)
    bars = go.Figure(go.Bar(
        x=probs[top][::-1], y=[lm.classes[k] for k in top][::-1], orientation="h",
        marker_color=charts.PALETTE[0], text=[f"{p:.1%}" for p in probs[top][::-1]],
        textposition="auto",
    ))  # fmt: skip
    bars.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), title="Top-5 predictions",
                       xaxis=dict(range=[0, 1]))  # fmt: skip
    charts.chart(c2, bars, key="top5")
    options = [None, *range(len(lm.classes))]
    target = c2.selectbox(
        "Explain the class", options,
        format_func=lambda k: f"predicted: {lm.classes[int(top[0])]}" if k is None else lm.classes[k],
    )  # fmt: skip
    if st.button("Explain", type="primary", key="explain") or st.session_state.get(
        f"explained:{key}:{image_key}:{target}"
    ):
        st.session_state[f"explained:{key}:{image_key}:{target}"] = True
        try:
            result = attributions(source, key, stamp, image_key, target, image)
        except inputs.LOAD_ERRORS as e:
            inputs.show_error(e)
        else:
            cols = st.columns(len(METHODS))
            base = image_to_uint8(image)
            for col, method in zip(cols, METHODS, strict=True):
                col.image(
                    pictures.png_bytes(overlay(base, result.maps[method]), scale=scale),
                    caption=METHOD_LABELS[method]
                    + (f" ({result.cam_layer})" if method == "grad_cam" else ""),
                )
            st.caption(
                f"Explaining **{lm.classes[result.target]}** "
                f"({result.probabilities[result.target]:.1%}). Brighter = more important."
            )
    else:
        st.caption("Explain computes Integrated Gradients, Saliency, Grad-CAM and Occlusion "
                   "(a few seconds to a minute on a CPU, then cached).")  # fmt: skip


# --- DeepDream and activation maximisation -------------------------------------------------------
names = [layer.name for layer in layers]
shapes = {layer.name: layer.shape for layer in layers}
default_layer = names.index(default_cam_layer(layers)) if layers else 0


def layer_picker(prefix: str) -> tuple[str, int]:
    c1, c2 = st.columns([3, 1])
    layer = c1.selectbox(
        "Layer", names, index=max(0, default_layer - 2), key=f"{prefix}_layer",
        format_func=lambda n: f"{n}  {tuple(shapes[n])}",
    )  # fmt: skip
    channel = c2.number_input("Channel", 0, shapes[layer][0] - 1, 0, key=f"{prefix}_channel")
    return layer, int(channel)


@st.cache_data(show_spinner=False, max_entries=32)
def dream_cached(source, key, stamp, image_key, layer, channel, octaves, iterations, step, _image):
    m = model_of(source, key, stamp)
    bar = st.progress(0.0, text="DeepDream…")
    out = deep_dream(
        m.model, _image, layer, m.mean, m.std, channel=channel, octaves=octaves,
        iterations=iterations, step_size=step,
        progress=lambda d, t: bar.progress(d / t, text=f"DeepDream: step {d} of {t}"),
    )  # fmt: skip
    bar.empty()
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def actmax_cached(source, key, stamp, layer, channel, steps, param, size, image_key=None,
                  _start=None):  # fmt: skip
    """From noise, or (`image_key` naming `_start`) from the chosen image."""
    m = model_of(source, key, stamp)
    bar = st.progress(0.0, text=f"Activation maximisation of channel {channel}…")
    out = activation_maximisation(
        m.model, layer, channel, m.mean, m.std, size=size, steps=steps, parameterisation=param,
        progress=lambda d, t: bar.progress(d / t, text=f"channel {channel}: step {d} of {t}"),
        start=None if image_key is None else _start,
    )  # fmt: skip
    bar.empty()
    return out


def strip(images: list[torch.Tensor], label: str) -> None:
    cols = st.columns(max(len(images), 1))
    for k, (col, im) in enumerate(zip(cols, images, strict=False)):
        col.image(pictures.png_bytes(image_to_uint8(im), scale=max(1, scale // 2)),
                  caption=f"{label} {k + 1}")  # fmt: skip


with tab_dream:
    layer, channel = layer_picker("dream")
    c1, c2, c3, c4, c5 = st.columns(5)
    octaves = c1.number_input("Octaves", 1, 6, 3)
    iterations = c2.number_input("Iterations / octave", 1, 100, 10)
    step = c3.number_input("Step size", 0.001, 0.2, 0.02, format="%.3f")
    steps = c4.number_input("Activation-max steps", 16, 1024, 256, step=16)
    param = c5.selectbox("Parameterisation", ["fourier", "pixel"],
                         help="Fourier + decorrelated colour: much cleaner images")  # fmt: skip
    c1, c2 = st.columns(2)
    whole = c1.toggle("DeepDream the whole layer (not just the channel)", value=False)
    from_image = c2.radio(
        "Activation maximisation starts from", ["noise", "this image"], horizontal=True,
        help="this image: forward the image to the layer, then maximise the feature (the "
        "Tsinghua DL HW2 visualisation); pixels are optimised directly",
    ) == "this image"  # fmt: skip
    # Shown again on a rerun only for exactly what was asked for (no surprise minutes of work).
    asked = f"visualised:{key}:{image_key}:{layer}:{channel}:{octaves}:{iterations}:{step}:{steps}:{param}:{whole}:{from_image}"
    if st.button("Visualise", type="primary", key="visualise") or st.session_state.get(asked):
        st.session_state[asked] = True
        left, right = st.columns(2)
        try:
            with left:
                st.markdown(f"**DeepDream** · {layer}" + ("" if whole else f" · channel {channel}"))
                dream = dream_cached(source, key, stamp, image_key, layer,
                                     None if whole else channel, int(octaves), int(iterations),
                                     float(step), image)  # fmt: skip
                st.image(pictures.png_bytes(image_to_uint8(dream.image), scale=scale))
            with right:
                st.markdown(
                    f"**Activation maximisation** · {layer} · channel {channel}"
                    + (" · from this image" if from_image else " · from noise")
                )
                amax = actmax_cached(source, key, stamp, layer, channel, int(steps), param,
                                     lm.image_size, image_key if from_image else None,
                                     image if from_image else None)  # fmt: skip
                st.image(pictures.png_bytes(image_to_uint8(amax.image), scale=scale))
        except inputs.LOAD_ERRORS as e:
            inputs.show_error(e)
        else:
            st.caption("DeepDream, octave by octave:")
            strip(dream.steps, "octave")
            st.caption("Activation maximisation, step by step:")
            strip(amax.steps, "snapshot")
    else:
        st.caption("Visualise runs both for the chosen layer and channel, with progress bars; "
                   "results are cached, so coming back is instant.")  # fmt: skip

with tab_grid:
    layer = st.selectbox(
        "Layer", names, index=max(0, default_layer - 2), key="grid_layer",
        format_func=lambda n: f"{n}  {tuple(shapes[n])}",
    )  # fmt: skip
    c1, c2 = st.columns(2)
    count = c1.number_input(
        "First N channels", 1, min(32, shapes[layer][0]), min(8, shapes[layer][0])
    )
    grid_steps = c2.number_input("Steps per channel", 16, 512, 128, step=16)
    asked = f"gridded:{key}:{layer}:{count}:{grid_steps}"
    if st.button("Draw the grid", type="primary", key="grid") or st.session_state.get(asked):
        st.session_state[asked] = True
        cols = st.columns(4)
        for c in range(int(count)):
            try:
                out = actmax_cached(source, key, stamp, layer, c, int(grid_steps), "fourier",
                                    lm.image_size)  # fmt: skip
            except inputs.LOAD_ERRORS as e:
                inputs.show_error(e)
                break
            cols[c % 4].image(pictures.png_bytes(image_to_uint8(out.image), scale=max(1, scale // 2)),
                              caption=f"channel {c}")  # fmt: skip
