"""What a person types or sees go wrong: errors in one line, typed paths confined to the data roots."""

from __future__ import annotations

import os

import streamlit as st

from engine.store import runs


def show_error(e: Exception) -> None:
    """Errors as the user can act on them; never a traceback."""
    st.error(str(e) or type(e).__name__)


def typed_path(text: str) -> str | None:
    """A data folder typed into a form: None when blank; ConfigError (naming the allowed
    folders) when it lies outside the data roots (engine.data.roots)."""
    from engine.data.roots import check_data_path

    return str(check_data_path(text.strip())) if text.strip() else None


def check_run_data(run_dir) -> None:
    """ConfigError when the run's data folder lies outside the data roots: a run imported
    from another machine can name any folder, and the dashboard reads only under its roots."""
    from engine.data.roots import check_data_path

    path = runs.load_config(run_dir).data.path
    if path:
        check_data_path(path)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")
