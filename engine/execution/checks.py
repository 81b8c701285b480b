"""What is checked before anything is made: a run's data (through its kind), its starting
weights (here, never at run time, never by a download), weights taken from another run."""

from __future__ import annotations

from pathlib import Path

from engine.config import ConfigError, RunConfig, TransferConfig
from engine.core.jsonfile import read_json_object
from engine.experiments.kinds import get_kind
from engine.store import runs
from engine.store.layout import RunLayout


def check_inputs(cfg: RunConfig) -> RunConfig:
    """The config valid, its data readable (every file a reader will open), its starting
    weights here and fitting: everything that can fail before a run folder exists."""
    cfg.validate()
    get_kind(cfg.kind).check_data(cfg)
    if isinstance(cfg, TransferConfig):
        check_weights(cfg)
    return cfg


def backbone_weights_file(value: str, runs_dir: str | Path | None = None) -> str:
    """A weight file from what a person gives: "imagenet", a file, or a run (its folder, id or
    id prefix), whose checkpoints/backbone.pt (a BYOL run's) or best.pt is taken."""
    if value == "imagenet":
        return value
    path = Path(value).expanduser()
    if path.is_file():
        return str(path.resolve())
    try:
        run_dir = runs.resolve_run(value, runs_dir)
    except runs.RunError as e:
        if "matches several runs" in str(e):
            raise ConfigError(f"weights {value!r}: {e}") from None
        raise ConfigError(f"weights {value!r}: no such weight file, run folder or run id") from None
    for name in ("backbone.pt", "best.pt"):
        if (found := RunLayout(run_dir).checkpoints / name).is_file():
            return str(found.resolve())
    raise ConfigError(f"run {run_dir.name} has no checkpoint yet (no checkpoints/best.pt)")


def check_source_run(weights: str | None, base: RunConfig) -> None:
    """Weights that a run of this workbench made must come from the same backbone, and from
    the same split of the same data when it is the same data (else its pretraining may have
    seen this comparison's validation and test images)."""
    if not weights or weights == "imagenet":
        return
    run_dir = Path(weights).parent.parent  # <run>/checkpoints/<file>
    try:
        source = read_json_object(run_dir / "config.json")
    except (OSError, ValueError):
        return  # a plain weight file: loaded with what fits, and reported
    name = (source.get("model") or {}).get("name")
    if name and name != base.model.name:
        raise ConfigError(
            f"run {run_dir.name} trained a {name} backbone; this comparison's backbone is "
            f"{base.model.name}: choose {name}, or weights of a {base.model.name}"
        )
    data = source.get("data") or {}
    same_data = (data.get("name"), data.get("path")) == (base.data.name, base.data.path)
    split = ("split_seed", "val_fraction", "test_fraction")
    if same_data and any(data.get(k) != getattr(base.data, k) for k in split):
        raise ConfigError(
            f"run {run_dir.name} used another split of {base.data.name} (split_seed, "
            "val_fraction, test_fraction): its pretraining may have seen this comparison's "
            "validation or test images"
        )


def check_weights(cfg: TransferConfig) -> None:
    """Fail now, with what to do, if a run's starting weights are not here or do not fit
    (never at run time, and never by trying a download)."""
    from engine.models.backbones import get_backbone
    from engine.models.weights import WeightsError, missing_message

    weights = cfg.backbone_weights
    if weights == "imagenet":
        spec = get_backbone(cfg.model.name)
        if not spec.weights_available():
            wf = spec.weight_file()
            if wf is None:
                spec.imagenet_state_dict()  # raises with what to install
            raise WeightsError(missing_message(wf))
    elif weights != "none":
        # Read it and fit it into the backbone now (no training): a file that is not a state
        # dict, or of another architecture, is refused before any run folder is made.
        from engine.models.backbones import build_transfer_net

        build_transfer_net(cfg.model.name, 2, cfg.data.image_size, weights)
