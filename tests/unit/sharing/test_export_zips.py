"""Export and import (engine.sharing.export, `python -m engine export` / `import`): projector files
that parse and agree with the snapshot, sprite tiles that are the points' images, CSVs equal
to the arrays and the events, run zips that round-trip, and malicious zips refused with
nothing left behind."""

import csv
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.cli.main import main
from engine.data import load_dataset
from engine.execution import executor
from engine.sharing import archive, export, projector_check
from engine.store import runs
from engine.store.events import read_events
from engine.store.layout import RunLayout

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["2", "3", "5", "7", "8"]  # relabelled 0..4: names and indices differ


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_config):
    """A real run, trained once for the module: five digit classes, snapshots at epochs 1, 2."""
    cfg = tiny_config(snapshot_size=40)
    cfg.data.classes = list(CLASSES)
    run_dir = runs.create_run(cfg.validate(), tmp_path_factory.mktemp("export_runs"))
    executor.execute(run_dir)
    return run_dir


@pytest.fixture
def run_dir(finished, runs_dir):
    """This test's own copy of the finished run, in `runs_dir`."""
    return Path(shutil.copytree(finished, runs_dir / finished.name))


def snapshot_arrays(run_dir: Path, epoch: int) -> dict[str, np.ndarray]:
    with np.load(RunLayout(run_dir).embedding_file(epoch), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def dataset_image(run_dir: Path, sample_id: int) -> np.ndarray:
    """(H, W, 3) uint8: the sample's image as the run's dataset loads it."""
    data = load_dataset(runs.load_config(run_dir).data)
    return data.images_by_id([sample_id])[0].numpy().transpose(1, 2, 0)


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (hidden ones too) with its bytes (None for a folder)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


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


# --- a run as a zip -------------------------------------------------------------------------
def test_a_run_zip_round_trips(run_dir, tmp_path):
    (RunLayout(run_dir).embeddings / ".epoch_0003.npz.x1.tmp").write_bytes(b"half a file")
    assert (run_dir / ".status.lock").exists() and (run_dir / ".train.lock").exists()
    zip_path = tmp_path / "share.zip"
    count = archive.pack_run(run_dir, zip_path)
    names = zipfile.ZipFile(zip_path).namelist()
    assert count == len(names) and all(n.startswith(f"{run_dir.name}/") for n in names)
    assert f"{run_dir.name}/checkpoints/best.pt" in names
    assert not [n for n in names if n.endswith((".tmp", ".lock"))]

    elsewhere = tmp_path / "elsewhere"
    imported = archive.unpack_run(zip_path, elsewhere)
    assert imported == elsewhere / run_dir.name
    want, got = tree(run_dir), tree(imported)
    left_out = {k for k in want if re.search(r"(^|/)\.[^/]*\.tmp$|^\.(status|train)\.lock$", k)}
    assert left_out == {
        ".status.lock",
        ".train.lock",
        "artifacts/embeddings/.epoch_0003.npz.x1.tmp",
    }
    got.pop(".status.lock")  # the import writes status.json, under its lock
    status, want_status = json.loads(got.pop("status.json")), json.loads(want.pop("status.json"))
    assert got == {k: v for k, v in want.items() if k not in left_out}
    here = ("pid", "pid_start", "host", "heartbeat")  # the other machine's process: not ours
    assert {k: v for k, v in status.items() if k in want_status and k not in ("updated", *here)} \
        == {k: v for k, v in want_status.items() if k not in ("updated", *here)}  # fmt: skip
    assert all(status[k] is None for k in here)
    assert status["imported_from"] == str(zip_path.resolve()) and status["state"] == "finished"
    assert runs.load_config(imported).to_dict() == runs.load_config(run_dir).to_dict()
    (listed,) = runs.list_runs(elsewhere)
    assert (listed.run_id, listed.state) == (run_dir.name, "finished")
    assert sorted(p.name for p in elsewhere.iterdir()) == [run_dir.name]  # no staging left


def test_a_zip_without_checkpoints_still_imports(run_dir, tmp_path):
    archive.pack_run(run_dir, tmp_path / "light.zip", checkpoints=False)
    names = zipfile.ZipFile(tmp_path / "light.zip").namelist()
    assert f"{run_dir.name}/config.json" in names and f"{run_dir.name}/metrics.jsonl" in names
    assert not [n for n in names if "/checkpoints/" in n]
    imported = archive.unpack_run(tmp_path / "light.zip", tmp_path / "other")
    assert runs.load_config(imported).to_dict() == runs.load_config(run_dir).to_dict()
    assert not RunLayout(imported).checkpoints.exists()


def test_an_id_already_present_gets_a_suffix(run_dir, tmp_path):
    archive.pack_run(run_dir, tmp_path / "r.zip")
    first = archive.unpack_run(tmp_path / "r.zip", tmp_path / "other")
    before = tree(first)
    second = archive.unpack_run(tmp_path / "r.zip", tmp_path / "other")
    third = archive.unpack_run(tmp_path / "r.zip", tmp_path / "other")
    assert first.name == run_dir.name
    assert (second.name, third.name) == (f"{run_dir.name}-imported", f"{run_dir.name}-imported-2")
    assert tree(first) == before  # never overwritten
    assert len(runs.list_runs(tmp_path / "other")) == 3
    assert runs.resolve_run(run_dir.name, tmp_path / "other") == first
    assert runs.read_status(second)["imported_run_id"] == run_dir.name


def test_a_run_packed_while_running_is_imported_as_stopped(run_dir, tmp_path):
    runs.write_status(run_dir, state="running", pid=os.getpid(), host="another-machine")
    archive.pack_run(run_dir, tmp_path / "r.zip")
    imported = archive.unpack_run(tmp_path / "r.zip", tmp_path / "other")
    status = runs.read_status(imported)
    assert status["state"] == "stopped" and status["pid"] is None
    assert status["imported_from"] == str((tmp_path / "r.zip").resolve())
    assert "imported while running" in status["note"]
    assert not runs.is_active(imported)


CONFIG = json.dumps({"model": {"name": "small_cnn"}, "epochs": 1}).encode()
LINK, FIFO = stat.S_IFLNK | 0o777, stat.S_IFIFO | 0o644


def write_zip(path: Path, members, compression=zipfile.ZIP_DEFLATED) -> Path:
    """`members`: (name, bytes, Unix mode or None) written as they are, however wrong."""
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", compression) as z:
        warnings.simplefilter("ignore")  # "Duplicate name": meant
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            info.external_attr = (mode if mode is not None else stat.S_IFREG | 0o644) << 16
            z.writestr(info, data)
    return path


def _corrupt(path: Path) -> None:
    """Flip a byte inside the stored data of run/big.bin: its CRC no longer matches."""
    data = bytearray(path.read_bytes())
    at = data.index(b"0123456789" * 10)
    data[at + 50] ^= 0xFF
    path.write_bytes(bytes(data))


MALICIOUS = {
    "absolute": ([("run/config.json", CONFIG, None), ("/tmp/evil.txt", b"x", None)],
                 r"'/tmp/evil.txt': an absolute path"),
    "dotdot": ([("run/config.json", CONFIG, None), ("run/../evil.txt", b"x", None)],
               r"'run/\.\./evil.txt': a '\.\.' in its path"),
    "symlink": ([("run/config.json", CONFIG, None), ("run/link", b"/etc/passwd", LINK)],
                r"'run/link': a symbolic link"),
    "fifo": ([("run/config.json", CONFIG, None), ("run/pipe", b"", FIFO)],
             r"'run/pipe': not a file or a folder"),
    "two folders": ([("run/config.json", CONFIG, None), ("other/config.json", CONFIG, None)],
                    r"'run': 2 top-level entries \(other, run\)"),
    "no config": ([("run/status.json", b"{}", None)], r"'run/config.json': no config.json"),
    "bad config": ([("run/config.json", b'{"optim": {"lr": -1}}', None)],
                   r"'run/config.json': invalid config: .*lr must be > 0"),
    "not json": ([("run/config.json", b"{not json", None)],
                 r"'run/config.json': invalid config: .*not valid JSON"),
    "bomb": ([("run/config.json", CONFIG, None), ("run/zeros.bin", bytes(50_000), None)],
             r"'run/zeros.bin': it unpacks to 50,\d+ bytes, over the limit of 10,000"),
    "same path twice": ([("run/config.json", CONFIG, None), ("run/a.txt", b"1", None),
                         ("run/a.txt", b"2", None)], r"'run/a.txt': the same path twice"),
    "damaged": ([("run/config.json", CONFIG, None),
                 ("run/big.bin", b"0123456789" * 10, None)], r"'run/big.bin': damaged"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MALICIOUS))
def test_a_malicious_zip_is_refused_and_leaves_the_runs_folder_as_it_was(
    case, run_dir, runs_dir, tmp_path, monkeypatch
):
    members, message = MALICIOUS[case]
    if case == "bomb":
        monkeypatch.setattr(archive, "MAX_UNPACKED_BYTES", 10_000)
    stored = zipfile.ZIP_STORED if case == "damaged" else zipfile.ZIP_DEFLATED
    zip_path = write_zip(tmp_path / f"{case}.zip", members, stored)
    if case == "damaged":
        _corrupt(zip_path)
    before = tree(runs_dir)
    with pytest.raises(archive.ArchiveError, match=message) as refused:
        archive.unpack_run(zip_path, runs_dir)
    assert f"refused to import {zip_path}" in str(refused.value)
    assert tree(runs_dir) == before  # nothing half-extracted, no staging folder
    if case not in ("same path twice", "damaged"):  # refused before anything was created
        with pytest.raises(archive.ArchiveError):
            archive.unpack_run(zip_path, tmp_path / "new_runs")
        assert not (tmp_path / "new_runs").exists()


def test_a_file_that_is_not_a_zip_is_refused(runs_dir, tmp_path):
    (tmp_path / "run.zip").write_text("hello")
    with pytest.raises(archive.ArchiveError, match=r"run\.zip: not a readable zip file"):
        archive.unpack_run(tmp_path / "run.zip", runs_dir)
    assert not runs_dir.exists()


# --- the command line -----------------------------------------------------------------------
def wrote(out: str) -> Path:
    (path,) = re.findall(r"wrote (.+?)(?: \(|$)", out, re.MULTILINE)
    return Path(path)


def test_cli_export_projector_says_where_and_how_to_open_it(run_dir, runs_dir, capsys):
    assert main(["--runs-dir", str(runs_dir), "export", run_dir.name]) == 0
    out = capsys.readouterr().out
    folder = wrote(out)
    assert folder == run_dir / "exports" / "projector_epoch_0002"
    assert len(projector_check.read_projector(folder).metadata) == 40
    assert f"tensorboard --logdir {folder}" in out and "projector.tensorflow.org" in out
    assert "sprite of 16 px thumbnails" in out

    mine = run_dir / "exports" / "mine"  # inside a run, only its exports/ may be written
    assert main(["--runs-dir", str(runs_dir), "export", run_dir.name, "--epoch", "1",
                 "--no-sprite", "--out", str(mine)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert wrote(out) == mine and "no sprite: not asked for" in out
    assert projector_check.read_projector(mine).sprite is None
    assert projector_check.read_projector(mine).config["tensor_name"][0].endswith("epoch 1")


@pytest.mark.parametrize("fmt, default", [("npz", "embeddings_epoch_0002.npz"),
                                          ("csv", "embeddings_epoch_0002.csv"),
                                          ("metrics", "metrics.csv")])  # fmt: skip
def test_cli_export_files_go_where_it_says(fmt, default, run_dir, runs_dir, capsys):
    assert main(["--runs-dir", str(runs_dir), "export", run_dir.name, "--format", fmt]) == 0
    path = wrote(capsys.readouterr().out)
    assert path == run_dir / "exports" / default and path.is_file()
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as npz:
            assert npz["classes"].tolist() == CLASSES
    else:
        header = path.read_text().splitlines()[0]
        assert header.startswith("sample_id,label" if fmt == "csv" else "time,name,split")


def test_cli_zip_export_and_import(run_dir, runs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--runs-dir", str(runs_dir), "export", run_dir.name, "--format", "zip",
                 "--no-checkpoints"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    zip_path = wrote(out)
    assert zip_path.resolve() == (tmp_path / f"{run_dir.name}.zip").resolve()
    assert "checkpoints left out" in out
    assert not [n for n in zipfile.ZipFile(zip_path).namelist() if "/checkpoints/" in n]

    other = tmp_path / "other"
    assert main(["--runs-dir", str(other), "import", str(zip_path)]) == 0
    assert f"-> {other / run_dir.name}" in capsys.readouterr().out
    assert main(["--runs-dir", str(other), "import", str(zip_path)]) == 0
    out = capsys.readouterr().out
    assert f"imported as {run_dir.name}-imported" in out
    assert main(["--runs-dir", str(other), "list"]) == 0
    assert capsys.readouterr().out.count(run_dir.name) == 2


def test_cli_errors_are_one_line(run_dir, runs_dir, tmp_path, capsys):
    argv = ["--runs-dir", str(runs_dir), "export", run_dir.name]
    assert main([*argv, "--format", "metrics", "--epoch", "1"]) == 2
    assert "--epoch does not apply to --format metrics" in capsys.readouterr().err
    assert main([*argv, "--epoch", "7"]) == 2
    assert "no snapshot at epoch 7; snapshots exist at epochs [1, 2]" in capsys.readouterr().err
    bad = write_zip(tmp_path / "bad.zip", [("run/../x", b"", None)])
    assert main(["--runs-dir", str(runs_dir), "import", str(bad)]) == 2
    assert f"error: refused to import {bad}" in capsys.readouterr().err


def test_python_m_engine_has_the_export_command(run_dir, runs_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "engine", "--runs-dir", str(runs_dir), "export", run_dir.name,
         "--format", "metrics", "--out", str(tmp_path / "m.csv")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert wrote(result.stdout) == tmp_path / "m.csv"
    assert (tmp_path / "m.csv").read_text().startswith("time,name,split,epoch,step,value")


@pytest.mark.parametrize(
    ("cell", "formula"),
    [("=HYPERLINK(1)", True), ("@SUM(A1)", True), ("-cmd|' /C calc'!A0", True), ("+1+1", True),
     ("-0.5", False), ("cat", False), (3, False)],
)  # fmt: skip
def test_a_cell_a_spreadsheet_would_run_is_defused(cell, formula):
    assert export._formula(cell) is formula
