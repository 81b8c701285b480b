"""Pretrained weight files: the cache folder, reading state dicts safely, and fetch (offline)."""

import socket
from pathlib import Path

import pytest
import torch

from engine.core.settings import REPO_ROOT
from engine.models.weights import (
    WeightFile,
    WeightsError,
    fetch,
    load_cached,
    load_state_dict_file,
    missing_message,
    torchvision_weight_file,
    weights_dir,
)

URL = "https://download.example.org/models/tinynet-0123abcd.pth"


@pytest.fixture
def cache(weight_cache):
    return weight_cache


@pytest.fixture
def wf(cache):
    return WeightFile("tinynet", URL, 12.3, "TinyNet_Weights.IMAGENET1K_V1")


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "bn.num_batches_tracked": torch.tensor(7),
    }


def _assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- where the files live ------------------------------------------------------------------------


def test_weights_dir_is_the_repo_cache_unless_the_environment_names_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_WEIGHTS_DIR", raising=False)
    assert weights_dir() == REPO_ROOT / "checkpoints" / "torchvision"
    monkeypatch.setenv("WORKBENCH_WEIGHTS_DIR", str(tmp_path / "elsewhere"))
    assert weights_dir() == tmp_path / "elsewhere"


def test_weight_file_is_named_after_its_url_inside_the_cache(wf, cache):
    assert wf.filename == "tinynet-0123abcd.pth"
    assert wf.path() == cache / "tinynet-0123abcd.pth"
    assert not wf.cached()
    cache.mkdir()
    torch.save(_state(), wf.path())
    assert wf.cached()
    _assert_same_state(load_cached(wf), _state())


def test_torchvision_weight_file_is_read_from_torchvision_itself(cache):
    from torchvision.models import ResNet18_Weights

    wf = torchvision_weight_file("resnet18", "ResNet18_Weights.IMAGENET1K_V1")
    assert wf.url == ResNet18_Weights.IMAGENET1K_V1.url
    assert wf.path() == cache / wf.url.rsplit("/", 1)[-1]
    assert wf.megabytes > 1 and wf.enum == "ResNet18_Weights.IMAGENET1K_V1"


def test_missing_message_says_which_file_goes_where_and_how_to_fetch_it(wf, cache):
    message = missing_message(wf)
    assert "python -m engine weights fetch tinynet" in message
    assert URL in message
    assert str(cache / "tinynet-0123abcd.pth") in message
    assert "TinyNet_Weights.IMAGENET1K_V1" in message and "12 MB" in message
    with pytest.raises(WeightsError) as raised:
        load_cached(wf)
    assert str(raised.value) == message


# --- reading a state dict ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"model": s, "optimizer": {"state": {}}, "progress": {"epoch": 3}},
        lambda s: {"state_dict": s, "epoch": 3},
    ],
    ids=["plain", "workbench-checkpoint", "state_dict-entry"],
)
def test_state_dict_is_read_from_every_common_wrapping(tmp_path, wrap):
    path = tmp_path / "w.pt"
    torch.save(wrap(_state()), path)
    _assert_same_state(load_state_dict_file(path), _state())
    _assert_same_state(load_state_dict_file(str(path)), _state())  # str paths too


@pytest.mark.parametrize(
    "content",
    [{"conv.weight": torch.zeros(2), "epoch": 3}, [torch.zeros(2)], torch.zeros(2), {"model": 5}],
    ids=["non-tensor-value", "list", "bare-tensor", "model-not-a-mapping"],
)
def test_content_that_is_not_a_state_dict_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(WeightsError, match="is not a state dict") as raised:
        load_state_dict_file(path)
    assert str(path) in str(raised.value)


def test_damaged_and_missing_files_are_named(tmp_path):
    path = tmp_path / "damaged.pt"
    torch.save(_state(), path)
    path.write_bytes(path.read_bytes()[:40])  # a download cut short
    with pytest.raises(WeightsError, match="cannot be read") as raised:
        load_state_dict_file(path)
    assert str(path) in str(raised.value)

    missing = tmp_path / "nowhere.pt"
    with pytest.raises(WeightsError, match="does not exist") as raised:
        load_state_dict_file(missing)
    assert str(missing) in str(raised.value)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(WeightsError, match="cannot be read") as raised:
        load_state_dict_file(path)
    assert str(path) in str(raised.value)
    assert not marker.exists()


# --- fetch, with a download function that the test provides ------------------------------------


def test_fetch_downloads_into_the_cache_with_the_hash_prefix_and_a_timeout(wf, cache):
    calls = []
    previous = socket.getdefaulttimeout()

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix, progress, socket.getdefaulttimeout()))
        torch.save(_state(), dst)

    path = fetch(wf, progress=False, timeout=7.5, download=download)
    assert path == wf.path() == cache / "tinynet-0123abcd.pth"
    assert calls == [(URL, str(path), "0123abcd", False, 7.5)]
    assert socket.getdefaulttimeout() == previous  # restored
    _assert_same_state(load_cached(wf), _state())

    # Cached: nothing is downloaded again.
    assert fetch(wf, download=lambda *a, **k: pytest.fail("downloaded a cached file")) == path
    assert len(calls) == 1


@pytest.mark.parametrize("error", [OSError("Network is unreachable"), RuntimeError("invalid hash")])
def test_a_failed_download_names_the_url_and_where_to_put_the_file(wf, error):
    previous = socket.getdefaulttimeout()

    def download(url, dst, **kw):
        raise error

    with pytest.raises(WeightsError) as raised:
        fetch(wf, download=download)
    message = str(raised.value)
    assert URL in message and str(wf.path()) in message and str(error) in message
    assert not wf.cached()
    assert socket.getdefaulttimeout() == previous


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp, "is a folder; give the file inside it"),
        (lambda tmp: Path("/dev/null"), "is not a regular file"),
        (
            lambda tmp: _write(tmp / "passwd", b"root:x:0:0:root:/root:/bin/bash\n"),
            "is not a PyTorch file",
        ),  # fmt: skip
        (lambda tmp: _write(tmp / "empty.pt", b""), "is empty"),
        (lambda tmp: tmp / "nothing.pt", "does not exist"),
    ],
)
def test_a_weight_file_that_is_not_one_is_said_as_what_it_is(tmp_path, make, message):
    # Issue 19: a folder or /dev/null said "does not exist"; /etc/passwd "list index out of range".
    path = make(tmp_path)
    with pytest.raises(WeightsError, match=message) as e:
        load_state_dict_file(path)
    assert str(path) in str(e.value)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
