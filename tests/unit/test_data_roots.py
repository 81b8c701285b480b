"""Folders typed into the dashboard must lie under a data root (issue 11): '..', symbolic
links and relative paths cannot lead out of one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.data.roots import ENV, check_data_path, data_roots


@pytest.fixture
def root(tmp_path):
    (tmp_path / "data" / "pets" / "cat").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    return tmp_path / "data"


def test_a_folder_under_a_root_is_returned_resolved(root):
    assert check_data_path(str(root / "pets" / ".." / "pets"), [root]) == root / "pets"
    assert check_data_path(str(root), [root]) == root  # the root itself


def test_dot_dot_out_of_a_root_is_refused(root):
    with pytest.raises(ConfigError, match="is outside the folders the dashboard may read"):
        check_data_path(str(root / "pets" / ".." / ".." / "secret"), [root])


def test_a_symbolic_link_inside_a_root_that_points_out_is_refused(root):
    (root / "shortcut").symlink_to(root.parent / "secret")
    with pytest.raises(ConfigError, match="shortcut is outside"):
        check_data_path(str(root / "shortcut"), [root])


def test_a_sibling_whose_name_starts_like_the_root_is_outside(root):
    (root.parent / "data-private").mkdir()
    with pytest.raises(ConfigError):
        check_data_path(str(root.parent / "data-private"), [root])


def test_a_relative_path_is_taken_from_the_working_folder(root, monkeypatch):
    monkeypatch.chdir(root)
    assert check_data_path("pets/cat", [root]) == root / "pets" / "cat"
    monkeypatch.chdir(root.parent / "secret")
    with pytest.raises(ConfigError):
        check_data_path(".", [root])


def test_the_message_names_the_roots_and_how_to_add_one(root):
    with pytest.raises(ConfigError) as caught:
        check_data_path("/etc", [root])
    assert str(root) in str(caught.value) and ENV in str(caught.value)


def test_the_environment_lists_the_roots(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv(ENV, f"{a}{os.pathsep}{b}{os.pathsep}")
    assert data_roots() == [a, b]
    assert check_data_path(str(b / "x")) == b / "x"


def test_by_default_the_projects_data_and_the_home_folder_are_roots(monkeypatch, tmp_path):
    from engine.core.settings import REPO_ROOT

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    roots = data_roots()
    assert (REPO_ROOT / "data").resolve() in roots and (tmp_path / "home").resolve() in roots
    with pytest.raises(ConfigError):
        check_data_path("/etc")


def test_a_home_of_slash_does_not_open_everything(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("HOME", "/")  # a container user without a home folder
    assert Path("/") not in data_roots()
    with pytest.raises(ConfigError):
        check_data_path("/etc")
