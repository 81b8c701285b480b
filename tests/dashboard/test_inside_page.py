"""AppTest tests of "Inside the network" and of the confusion page's images of a cell."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dashboard.components import pictures
from engine.store import runs
from engine.store.layout import RunLayout
from tests.support.pages import page


def _captions(at) -> list[str]:
    return [c.value for c in at.caption]


def _image_captions(at) -> list[str]:
    return [caption for el in at.get("image") for caption in el.captions]


def test_a_backbone_explains_the_sample_photo_with_four_maps(runs_dir):
    at = page("inside").run()
    assert not at.exception
    assert at.radio[0].value == "backbone"  # no run has a checkpoint yet
    at.button(key="explain").click().run()
    assert not at.exception
    explained = next(c for c in _captions(at) if c.startswith("Explaining"))
    assert "palace" in explained or "bell cote" in explained
    shown = _image_captions(at)
    for caption in ("Integrated Gradients", "Saliency", "Grad-CAM (_conv_head)", "Occlusion"):
        assert caption in shown


def test_a_runs_checkpoint_and_its_test_images(finished_run):
    at = page("inside").run()
    assert not at.exception
    assert at.radio[0].value == "run"
    assert any(c.startswith("true class:") for c in _captions(at))
    layers = at.selectbox(key="dream_layer")
    assert "features.2" in layers.value  # small_cnn's last block, read off the model itself
    at.button(key="visualise").click().run()
    assert not at.exception
    assert "DeepDream, octave by octave:" in _captions(at)
    assert "Activation maximisation, step by step:" in _captions(at)
    shown = _image_captions(at)
    assert [c for c in shown if c.startswith("octave")] == ["octave 1", "octave 2", "octave 3"]
    assert len([c for c in shown if c.startswith("snapshot")]) == 6


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("notes.txt", b"not an image at all", "is not an image this page can read"),
        ("huge.png", b"0" * (11 * 2**20), "the limit is 10 MB"),
    ],
)
def test_an_upload_that_is_not_a_usable_image_is_refused_with_its_name(name, data, message):
    with pytest.raises(ValueError, match=message) as raised:
        pictures.read_image_upload(_Upload(name, data))
    assert name in str(raised.value)


def test_a_real_upload_is_read_as_rgb():
    buf = io.BytesIO()
    Image.fromarray(np.full((10, 14), 200, np.uint8)).save(buf, format="PNG")  # grey, 1 channel
    image = pictures.read_image_upload(_Upload("grey.png", buf.getvalue()))
    assert tuple(image.shape) == (3, 10, 14) and int(image.max()) == 200


class _Upload:
    """What st.file_uploader returns, as far as the reader is concerned."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.size, self._data = name, len(data), data

    def getvalue(self) -> bytes:
        return self._data


def test_confusion_page_shows_the_images_of_the_most_frequent_mistake(finished_run):
    at = page("confusion").run()
    assert not at.exception
    emb = np.load(RunLayout(finished_run).embedding_file(3))
    true_c = at.selectbox(key="cell_true").value
    pred_c = at.selectbox(key="cell_pred").value
    wrong = (emb["labels"] != emb["predictions"]).sum()
    caption = _captions(at)[-1]
    if wrong:
        assert true_c != pred_c
        count = int(((emb["labels"] == true_c) & (emb["predictions"] == pred_c)).sum())
        assert caption.startswith(f"{min(count, 12)} of the validation images")
    at.selectbox(key="cell_true").set_value(0).run()
    at.selectbox(key="cell_pred").set_value(0).run()
    assert not at.exception
    right = int(((emb["labels"] == 0) & (emb["predictions"] == 0)).sum())
    assert _captions(at)[-1].startswith(f"{min(right, 12)} of the validation images of class **0**")
    assert runs.read_status(finished_run)["state"] == "finished"


def test_uploads_with_transparency_or_16_bits_keep_their_content():
    buf = io.BytesIO()
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent: shown as the white it sits on
    rgba[0, 0, 3] = 255  # one opaque red pixel
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    image = pictures.read_image_upload(_Upload("alpha.png", buf.getvalue()))
    assert image[:, 0, 0].tolist() == [255, 0, 0] and image[:, 1, 1].tolist() == [255, 255, 255]
    buf = io.BytesIO()
    ramp = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(ramp).save(buf, format="PNG")  # 16-bit grey
    image = pictures.read_image_upload(_Upload("ramp16.png", buf.getvalue()))
    assert int(image.min()) == 0 and int(image.max()) == 255
    assert len(np.unique(image[0].numpy())) == 64  # the ramp survives, not clipped at 255


def test_visualisations_rerun_only_for_what_was_asked(finished_run):
    at = page("inside").run()
    at.button(key="visualise").click().run()
    assert "DeepDream, octave by octave:" in _captions(at)
    at.number_input(key="dream_channel").set_value(1).run()  # another channel: not computed
    assert not at.exception
    assert "DeepDream, octave by octave:" not in _captions(at)
    at.number_input(key="dream_channel").set_value(0).run()  # back: shown again (cached)
    assert "DeepDream, octave by octave:" in _captions(at)


def test_the_confusion_page_offers_only_runs_whose_model_classifies_an_image(
    finished_run, runs_dir
):
    """A BYOL, segmentation or few-shot run has no class scores for one image: not offered
    (a click on one of its cells could only end in an error)."""
    from engine.config import FewShotConfig, SegmentConfig, SSLConfig

    others = [
        runs.create_run(c(), runs_dir).name for c in (SSLConfig, SegmentConfig, FewShotConfig)
    ]
    at = page("confusion").run()
    assert not at.exception
    offered = at.selectbox(key="run_picker").options
    assert any(finished_run.name in o for o in offered)  # the control: a classify run is
    assert not any(name in o for o in offered for name in others), offered
