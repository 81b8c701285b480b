"""Export of a run's snapshots (engine.sharing.export): projector files that parse and agree
with the snapshot, sprite tiles that are the points' images, and .npz and CSVs equal to the
arrays and the events. Run zips and the command line: test_export_zips.py."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data import load_dataset
from engine.sharing import export, projector_check
from engine.store import runs
from engine.store.events import read_events
from engine.store.layout import RunLayout
from tests.support.export import CLASSES


def snapshot_arrays(run_dir: Path, epoch: int) -> dict[str, np.ndarray]:
    with np.load(RunLayout(run_dir).embedding_file(epoch), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def dataset_image(run_dir: Path, sample_id: int) -> np.ndarray:
    """(H, W, 3) uint8: the sample's image as the run's dataset loads it."""
    data = load_dataset(runs.load_config(run_dir).data)
    return data.images_by_id([sample_id])[0].numpy().transpose(1, 2, 0)


# --- the Embedding Projector ------------------------------------------------------------
def projector_config_class():
    """TensorBoard's ProjectorConfig message built from its .proto (tensorboard is not a
    dependency here), so the config is parsed by protobuf's own text-format parser."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="projector_config.proto", package="tensorboard.projector", syntax="proto3"
    )
    layout = {  # field name -> (number, type, repeated, message type) as in projector_config.proto
        "SpriteMetadata": [("image_path", 1, F.TYPE_STRING, False, None),
                           ("single_image_dim", 2, F.TYPE_UINT32, True, None)],
        "EmbeddingInfo": [("tensor_name", 1, F.TYPE_STRING, False, None),
                          ("metadata_path", 2, F.TYPE_STRING, False, None),
                          ("bookmarks_path", 3, F.TYPE_STRING, False, None),
                          ("tensor_shape", 4, F.TYPE_UINT32, True, None),
                          ("sprite", 5, F.TYPE_MESSAGE, False, ".tensorboard.projector.SpriteMetadata"),
                          ("tensor_path", 6, F.TYPE_STRING, False, None)],
        "ProjectorConfig": [("model_checkpoint_path", 1, F.TYPE_STRING, False, None),
                            ("embeddings", 2, F.TYPE_MESSAGE, True, ".tensorboard.projector.EmbeddingInfo"),
                            ("model_checkpoint_dir", 3, F.TYPE_STRING, False, None)],
    }  # fmt: skip
    for message, fields in layout.items():
        m = proto.message_type.add(name=message)
        for name, number, kind, repeated, type_name in fields:
            label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
            f = m.field.add(name=name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(proto.SerializeToString())
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorboard.projector.ProjectorConfig")
    )


def test_projector_files_parse_and_agree_with_the_snapshot(run_dir, tmp_path):
    out = tmp_path / "projector"
    result = export.export_projector(run_dir, out)
    assert result.epoch == RunLayout(run_dir).embedding_epochs()[-1] == 2  # the last by default
    emb = snapshot_arrays(run_dir, 2)
    n, d = emb["features"].shape
    assert result.shape == (n, d) and n == 40

    p = projector_check.read_projector(out)
    np.testing.assert_array_equal(p.tensors, emb["features"])  # exactly, float32
    assert p.config["tensor_path"] == ["tensors.tsv"] and p.config["tensor_shape"] == [n, d]
    assert p.config["tensor_name"] == [f"{run_dir.name} epoch 2"]
    assert p.header == ["sample_id", "label", "predicted", "correct"]
    assert [int(r[0]) for r in p.metadata] == emb["sample_ids"].tolist()
    assert [r[1] for r in p.metadata] == [CLASSES[y] for y in emb["labels"]]
    assert [r[2] for r in p.metadata] == [CLASSES[y] for y in emb["predictions"]]
    assert [r[3] for r in p.metadata] == [
        "true" if y == q else "false"
        for y, q in zip(emb["labels"], emb["predictions"], strict=True)
    ]
    # 16-px digits fit at their own size: the tiles are the images themselves.
    assert result.thumbnail == 16 and p.single_image_dim == (16, 16)
    assert p.sprite.shape == (7 * 16, 7 * 16, 3)  # ceil(sqrt(40)) = 7 columns, square
    np.testing.assert_array_equal(p.tile(0), dataset_image(run_dir, emb["sample_ids"][0]))

    # TensorBoard reads the config with protobuf's text format: it must parse there too.
    from google.protobuf import text_format

    config = text_format.Parse(
        (out / "projector_config.pbtxt").read_text(), projector_config_class()()
    )
    (e,) = config.embeddings
    assert (e.tensor_path, e.metadata_path, list(e.tensor_shape)) == (
        "tensors.tsv",
        "metadata.tsv",
        [n, d],
    )
    assert (e.sprite.image_path, list(e.sprite.single_image_dim)) == ("sprite.png", [16, 16])


def test_sprite_tiles_are_the_points_images_resized(run_dir, tmp_path):
    result = export.export_projector(run_dir, tmp_path / "p", epoch=1, max_thumbnail=10)
    emb = snapshot_arrays(run_dir, 1)
    n = len(emb["sample_ids"])
    p = projector_check.read_projector(tmp_path / "p")
    assert result.thumbnail == 10 and p.single_image_dim == (10, 10)
    columns = math.isqrt(n - 1) + 1
    assert p.sprite.shape == (columns * 10, columns * 10, 3)
    for i in (0, 9, n - 1):  # row-major: point 9 starts the second row of 7
        image = dataset_image(run_dir, emb["sample_ids"][i])
        resized = np.asarray(Image.fromarray(image).resize((10, 10), Image.Resampling.BILINEAR))
        np.testing.assert_array_equal(p.tile(i), resized)
    assert not np.array_equal(p.tile(0), p.tile(n - 1))
    for i in range(n, columns * columns):  # the rest of the last row stays empty
        assert not p.tile(i).any()


@pytest.mark.parametrize(
    "points, image_px", [(1, 32), (40, 16), (10_000, 32), (100_000, 224), (4_000_000, 32)]
)
def test_sprite_grid_fits_the_projectors_limit(points, image_px):
    columns, side = export.sprite_grid(points, image_px)
    assert (columns - 1) ** 2 < points <= columns**2
    assert columns * side <= export.SPRITE_MAX_PX
    assert side == min(image_px, export.MAX_THUMBNAIL_PX) or columns * (side + 1) > 8192


def test_a_sprite_of_more_points_than_pixels_is_refused():
    with pytest.raises(ValueError, match="do not fit a 8192x8192 sprite"):
        export.sprite_grid(8193**2, 32)


def test_no_sprite_when_the_images_are_not_on_this_machine(run_dir, tmp_path):
    out = tmp_path / "p"
    assert export.export_projector(run_dir, out).thumbnail == 16
    assert (out / "sprite.png").is_file()
    config = json.loads(RunLayout(run_dir).config.read_text())
    config["data"].update(name="folder", path=str(tmp_path / "gone"))  # as on another machine
    RunLayout(run_dir).config.write_text(json.dumps(config))

    result = export.export_projector(run_dir, out)
    assert result.thumbnail is None and str(tmp_path / "gone") in result.no_sprite
    assert not (out / "sprite.png").exists()  # not the previous export's
    p = projector_check.read_projector(out)
    assert p.sprite is None and "sprite" not in p.config and len(p.metadata) == 40


def test_classes_are_indices_when_the_run_has_no_names(run_dir, tmp_path):
    status = json.loads(RunLayout(run_dir).status.read_text())
    status.pop("classes")
    (status.get("summary") or {}).pop("classes", None)
    RunLayout(run_dir).status.write_text(json.dumps(status))
    export.export_projector(run_dir, tmp_path / "p", sprite=False)
    labels = snapshot_arrays(run_dir, 2)["labels"]
    assert [r[1] for r in projector_check.read_projector(tmp_path / "p").metadata] == [
        str(y) for y in labels
    ]


def _drop_a_metadata_row(out: Path) -> None:
    lines = (out / "metadata.tsv").read_text().splitlines()
    (out / "metadata.tsv").write_text("\n".join(lines[:-1]) + "\n")


def _misstate_the_shape(out: Path) -> None:
    path = out / "projector_config.pbtxt"
    path.write_text(path.read_text().replace("tensor_shape: 40", "tensor_shape: 41"))


def _oversize_the_thumbnails(out: Path) -> None:
    path = out / "projector_config.pbtxt"
    path.write_text(path.read_text().replace("single_image_dim: 16", "single_image_dim: 56"))


def _shorten_a_tensor_row(out: Path) -> None:
    lines = (out / "tensors.tsv").read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0]
    (out / "tensors.tsv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "damage, message",
    [
        (_drop_a_metadata_row, "39 rows for 40 points"),
        (_misstate_the_shape, r"tensor_shape \[41, \d+\]"),
        (_oversize_the_thumbnails, "room for 4 thumbnails, not the 40 points"),
        (_shorten_a_tensor_row, "tensors.tsv: not a table"),
    ],
)
def test_read_projector_finds_files_that_disagree(run_dir, tmp_path, damage, message):
    out = tmp_path / "p"
    export.export_projector(run_dir, out)
    projector_check.read_projector(out)
    damage(out)
    with pytest.raises(ValueError, match=message):
        projector_check.read_projector(out)


# --- .npz, CSV, metrics ---------------------------------------------------------------------
def test_npz_holds_the_snapshots_arrays_and_class_names(run_dir, tmp_path):
    assert export.export_npz(run_dir, tmp_path / "e.npz", epoch=1) == 1
    want = snapshot_arrays(run_dir, 1)
    with np.load(tmp_path / "e.npz", allow_pickle=False) as got:
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value)
        assert got["classes"].tolist() == CLASSES
        assert int(got["epoch"]) == 1 and str(got["run_id"]) == run_dir.name
    assert not np.array_equal(want["features"], snapshot_arrays(run_dir, 2)["features"])


def test_embeddings_csv_rows_equal_the_snapshot(run_dir, tmp_path):
    assert export.export_csv(run_dir, tmp_path / "e.csv") == 2
    emb = snapshot_arrays(run_dir, 2)
    with open(tmp_path / "e.csv", newline="") as f:
        header, *rows = list(csv.reader(f))
    d = emb["features"].shape[1]
    assert header == ["sample_id", "label", "prediction", "correct", *(f"f{j}" for j in range(d))]
    assert [int(r[0]) for r in rows] == emb["sample_ids"].tolist()
    assert [r[1] for r in rows] == [CLASSES[y] for y in emb["labels"]]
    assert [r[2] for r in rows] == [CLASSES[y] for y in emb["predictions"]]
    assert [int(r[3]) for r in rows] == (emb["labels"] == emb["predictions"]).astype(int).tolist()
    features = np.asarray([r[4:] for r in rows], dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(features, emb["features"])


def test_metrics_csv_rows_equal_the_events(run_dir, tmp_path):
    extra = {"time": 1.25, "name": "custom", "value": None, "split": "val", "note": "a, b",
             "detail": {"k": [1, 2]}}  # fmt: skip
    with open(RunLayout(run_dir).metrics, "a") as f:
        f.write(json.dumps(extra) + "\n")
    events = read_events(RunLayout(run_dir).metrics)[0]
    assert export.export_metrics(run_dir, tmp_path / "m.csv") == len(events) > 10
    with open(tmp_path / "m.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    columns = ["time", "name", "split", "epoch", "step", "value"]
    assert reader.fieldnames[:6] == columns and {"note", "detail"} <= set(reader.fieldnames)
    assert len(rows) == len(events)
    for event, row in zip(events, rows, strict=True):
        assert row["name"] == event["name"] and float(row["time"]) == event["time"]
        for key in ("value", "epoch", "step"):
            if event.get(key) is None:
                assert row[key] == ""
            else:
                assert float(row[key]) == event[key]
        assert row["split"] == (event.get("split") or "")
    assert rows[-1]["note"] == "a, b" and json.loads(rows[-1]["detail"]) == {"k": [1, 2]}
    assert rows[-1]["value"] == "" and rows[0]["note"] == ""
