"""torchvision's pretrained FCN / DeepLabV3 (COCO images, VOC's 21 classes) as a segment run's
start (`backbone_weights: coco_voc`): the file read from torchvision's enum, loaded whole but
for the class scorers, refused clearly when missing or damaged, fetched and listed by
`python -m engine weights`. Nothing is downloaded: the weight files are written here."""

from __future__ import annotations

import pytest
import torch

from engine.cli.main import main
from engine.config import ConfigError, DataConfig, ModelConfig, SegmentConfig
from engine.models.segmentation import build_segmentation_model, coco_voc_weight_file
from engine.models.weights import WeightsError, fetch

CLASSES = 7  # a run's classes: not VOC's 21, so the class scorers cannot load
SCORERS = ("classifier.4.", "aux_classifier.4.")


@pytest.fixture(scope="module")
def fcn_coco_file(tmp_path_factory):
    """A stand-in for torchvision's fcn_resnet50 COCO file: its architecture (21 classes, the
    auxiliary head), every float tensor random so that a loaded one is told from a fresh one."""
    from torchvision.models.segmentation import fcn_resnet50

    torch.manual_seed(0)
    net = fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    state = net.state_dict()
    for value in state.values():
        if value.is_floating_point():
            value.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("coco") / "fcn_resnet50_coco.pth"
    torch.save(state, path)
    return path, state


def _cache(weight_cache, source, name="fcn_resnet50"):
    """`source` placed in the (test's own) weight cache as `name`'s COCO file."""
    wf = coco_voc_weight_file(name)
    weight_cache.mkdir(exist_ok=True)
    wf.path().symlink_to(source)
    return wf


def _segment_config(name="fcn_resnet50", **kw) -> SegmentConfig:
    return SegmentConfig(model=ModelConfig(name=name), backbone_weights="coco_voc",
                         data=DataConfig(name="landcover", image_size=64), **kw)  # fmt: skip


# --- the file ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, enum",
    [
        ("fcn_resnet50", "FCN_ResNet50_Weights"),
        ("deeplabv3_resnet50", "DeepLabV3_ResNet50_Weights"),
    ],
)
def test_the_coco_voc_file_is_read_from_torchvision_s_enum(name, enum, weight_cache):
    from torchvision.models import segmentation

    weights = getattr(segmentation, enum).COCO_WITH_VOC_LABELS_V1
    wf = coco_voc_weight_file(name)
    assert wf.url == weights.url
    assert wf.megabytes == weights.meta["_file_size"]
    assert wf.path() == weight_cache / weights.url.rsplit("/", 1)[-1]
    assert wf.enum == f"{enum}.COCO_WITH_VOC_LABELS_V1"


def test_only_torchvision_s_segmentation_models_have_coco_voc_weights():
    with pytest.raises(ValueError, match="fcn32s has no COCO"):
        coco_voc_weight_file("fcn32s")


# --- loading -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_the_class_scorers_are_the_only_tensors_that_depend_on_the_classes(name):
    from torchvision.models import segmentation

    voc = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=21,
                                      aux_loss=True).state_dict()  # fmt: skip
    ours = build_segmentation_model(name, CLASSES, 64, "none", aux_loss=True)[0].net.state_dict()
    assert set(ours) == set(voc)
    differ = {k for k in voc if voc[k].shape != ours[k].shape}
    assert differ == {f"{s}{p}" for s in SCORERS for p in ("weight", "bias")}


def test_coco_voc_loads_the_whole_model_but_its_voc_class_scorers(fcn_coco_file, weight_cache):
    source, saved = fcn_coco_file
    _cache(weight_cache, source)
    torch.manual_seed(3)
    fresh, _ = build_segmentation_model("fcn_resnet50", CLASSES, 64, "none", aux_loss=True)
    torch.manual_seed(3)  # the same initialisation: the scorers must be left as it made them
    model, report = build_segmentation_model("fcn_resnet50", CLASSES, 64, "coco_voc",
                                             aux_loss=True)  # fmt: skip
    own, initial = model.net.state_dict(), fresh.net.state_dict()
    assert set(own) == set(saved)
    for key, value in saved.items():
        if key.startswith(SCORERS):  # VOC's 21 classes; the run has 7
            assert own[key].shape[0] == CLASSES and torch.equal(own[key], initial[key]), key
        else:
            assert torch.equal(own[key], value), key
    loaded = len(saved) - 4  # all but the two scorers' weight and bias
    assert report == (
        f"COCO (VOC labels) fcn_resnet50: {loaded} tensors (backbone, head, auxiliary head); "
        f"freshly initialised: aux_classifier.4, classifier.4 (VOC's 21 classes, this run has "
        f"{CLASSES})"
    )


def test_without_aux_loss_the_file_s_auxiliary_head_is_left_unused(fcn_coco_file, weight_cache):
    source, saved = fcn_coco_file
    _cache(weight_cache, source)
    model, report = build_segmentation_model("fcn_resnet50", CLASSES, 64, "coco_voc")
    assert model.net.aux_classifier is None
    backbone = model.net.backbone.state_dict()
    assert all(torch.equal(v, saved[f"backbone.{k}"]) for k, v in backbone.items())
    assert torch.equal(model.net.classifier[0].weight, saved["classifier.0.weight"])
    assert "freshly initialised: classifier.4 (" in report
    assert report.endswith("the file's auxiliary head unused (aux_loss off)")


def test_a_missing_file_says_where_to_get_it_and_where_to_put_it(weight_cache):
    wf = coco_voc_weight_file("fcn_resnet50")
    with pytest.raises(WeightsError) as raised:
        build_segmentation_model("fcn_resnet50", CLASSES, 64, "coco_voc", aux_loss=True)
    message = str(raised.value)
    assert message.startswith("COCO (VOC labels) weights for fcn_resnet50 "
                              "(FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1, 135 MB)")  # fmt: skip
    assert "ImageNet" not in message
    assert "python -m engine weights fetch fcn_resnet50" in message
    assert f"download {wf.url} and place it at {weight_cache / wf.filename}" in message
    assert wf.url == "https://download.pytorch.org/models/fcn_resnet50_coco-1167a1af.pth"


@pytest.mark.parametrize(
    "damage",
    [
        lambda path, data: path.write_bytes(data[: len(data) // 3]),  # a download cut short
        lambda path, data: path.write_bytes(b"<html>503 Service Unavailable</html>"),
    ],
    ids=["truncated", "garbage"],
)
def test_a_damaged_file_is_one_line_naming_it(fcn_coco_file, weight_cache, damage):
    wf = coco_voc_weight_file("fcn_resnet50")
    weight_cache.mkdir()
    damage(wf.path(), fcn_coco_file[0].read_bytes())
    with pytest.raises(WeightsError) as raised:
        build_segmentation_model("fcn_resnet50", CLASSES, 64, "coco_voc")
    message = str(raised.value)
    assert "\n" not in message and str(wf.path()) in message


def test_a_file_of_another_model_is_refused_saying_what_does_not_fit(fcn_coco_file, weight_cache):
    _, saved = fcn_coco_file
    other = {k: v for k, v in saved.items() if k != "classifier.0.weight"}
    other["classifier.0.convs.0.0.weight"] = torch.zeros(1)  # DeepLabV3's ASPP, say
    wf = coco_voc_weight_file("fcn_resnet50")
    weight_cache.mkdir()
    torch.save(other, wf.path())
    with pytest.raises(WeightsError) as raised:
        build_segmentation_model("fcn_resnet50", CLASSES, 64, "coco_voc", aux_loss=True)
    message = str(raised.value)
    assert message.startswith(f"weight file {wf.path()} does not fit fcn_resnet50: ")
    assert "1 of its tensors missing (e.g. classifier.0.weight)" in message
    assert "1 that do not fit it (e.g. classifier.0.convs.0.0.weight)" in message


# --- the config and the run ----------------------------------------------------------------------


def test_coco_voc_is_a_choice_of_the_torchvision_models_alone():
    for name in ("fcn_resnet50", "deeplabv3_resnet50"):
        cfg = _segment_config(name).validate()
        cfg.resolve_for_run()
        assert cfg.backbone_weights == "coco_voc"  # never quietly replaced by less
        assert SegmentConfig.from_dict(cfg.to_dict()).backbone_weights == "coco_voc"
    for name in ("fcn32s", "unet_small"):
        with pytest.raises(ConfigError, match=f"exist only for fcn_resnet50, deeplabv3_resnet50; "
                           f"{name} starts from 'imagenet' or 'none'"):  # fmt: skip
            _segment_config(name).validate()
    with pytest.raises(ConfigError, match="must be 'imagenet' or 'none' \\(or 'coco_voc' for"):
        SegmentConfig(backbone_weights="coco").validate()


def test_a_config_without_backbone_weights_still_means_imagenet():
    stored = _segment_config().to_dict()
    del stored["backbone_weights"]
    assert SegmentConfig.from_dict(stored).backbone_weights == "imagenet"


def test_a_coco_voc_run_whose_file_is_not_cached_is_not_made(runs_dir, weight_cache):
    from engine.execution.start import start_run
    from engine.store import runs

    with pytest.raises(WeightsError, match="COCO \\(VOC labels\\) weights for fcn_resnet50"):
        start_run(_segment_config(), runs_dir, launch=False)
    assert runs.list_runs(runs_dir) == []


def test_a_coco_voc_run_logs_what_was_loaded_and_uses_imagenet_normalisation(
    fcn_coco_file, weight_cache, capsys
):
    from engine.data import load_dataset
    from engine.experiments.segment import prepare
    from engine.models.backbones import get_backbone

    _cache(weight_cache, fcn_coco_file[0])
    cfg = _segment_config()
    p = prepare(cfg, load_dataset(cfg.data), torch.device("cpu"))
    report = p.info["weights_report"]
    assert report.startswith("COCO (VOC labels) fcn_resnet50: ")
    assert f"weights: {report}" in capsys.readouterr().out  # the run's log
    resnet50 = get_backbone("resnet50")
    assert p.extra_state["mean"] == list(resnet50.mean)
    assert p.extra_state["std"] == list(resnet50.std)


# --- python -m engine weights --------------------------------------------------------------------


def _fake_download(url, dst, hash_prefix=None, progress=True):
    torch.save({"w": torch.zeros(1)}, dst)
    _fake_download.calls.append((url, dst, hash_prefix))


def test_fetch_writes_the_coco_file_where_a_run_looks_for_it(weight_cache):
    _fake_download.calls = []
    wf = coco_voc_weight_file("deeplabv3_resnet50")
    path = fetch(wf, progress=False, download=_fake_download)
    assert path == weight_cache / "deeplabv3_resnet50_coco-cd0a2569.pth" and wf.cached()
    assert _fake_download.calls == [(wf.url, str(path), "cd0a2569")]


def test_weights_fetch_of_a_segmentation_model_names_what_it_fetched(
    weight_cache, capsys, monkeypatch
):
    import torch.hub

    _fake_download.calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fake_download)
    wf = coco_voc_weight_file("fcn_resnet50")
    assert main(["weights", "fetch", "fcn_resnet50"]) == 0
    out = capsys.readouterr().out
    what = "fcn_resnet50: COCO (VOC labels) weights (FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1)"
    assert f"{what}: fetching {wf.url} (135 MB) into {wf.path()}" in out
    assert f"done: {what} at {wf.path()}" in out
    assert [c[0] for c in _fake_download.calls] == [wf.url] and wf.cached()
    assert main(["weights", "fetch", "fcn_resnet50"]) == 0
    assert f"{what} already cached at {wf.path()}" in capsys.readouterr().out
    assert len(_fake_download.calls) == 1

    assert main(["weights", "fetch", "fcn_resnet"]) == 2  # a name that is neither
    err = capsys.readouterr().err
    assert "no weights named 'fcn_resnet'" in err and "fcn_resnet50, deeplabv3_resnet50" in err


def test_weights_list_shows_whether_each_coco_file_is_cached(weight_cache, capsys):
    weight_cache.mkdir()
    torch.save({}, coco_voc_weight_file("fcn_resnet50").path())
    assert main(["weights", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    fcn, deeplab = lines["fcn_resnet50"], lines["deeplabv3_resnet50"]
    assert " cached " in fcn and "not cached" not in fcn
    assert "fcn_resnet50_coco-1167a1af.pth" in fcn and "135 MB" in fcn
    assert "not cached" in deeplab and "deeplabv3_resnet50_coco-cd0a2569.pth" in deeplab
    assert "not cached" in lines["resnet50"]  # the ImageNet backbone is a file of its own


def test_the_comparison_gives_coco_weights_to_the_improved_model_only():
    from engine.experiments.presets import preset_configs

    base = SegmentConfig(model=ModelConfig(name="fcn_resnet50"), backbone_weights="coco_voc",
                         data=DataConfig(name="landcover", image_size=64))  # fmt: skip
    rows = {cfg.model.name: cfg.backbone_weights
            for _, cfg, _ in preset_configs("fcn32s-vs-improved", base.validate())}  # fmt: skip
    assert rows == {"fcn32s": "imagenet", "fcn_resnet50": "coco_voc"}
