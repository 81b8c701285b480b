"""A run's test, item by item (`test_outcomes.json`): what paired comparisons and intervals
are computed from (engine.analysis.stats).

Three kinds, one per score:
- "accuracy": `ids` (the test images' dataset ids) and `correct` (1 or 0 each);
- "miou": `ids` and, per image and class, `tp`, `predicted` and `actual` pixel counts;
- "episodes": `episode_acc`, the accuracy of each of the fixed test episodes (`shots`-shot),
  which are the same for every run on the same data.

Read back, the file is checked whole: a damaged one is a RunError naming it, never a wrong
interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.core.atomic import write_json
from engine.core.jsonfile import read_json_object
from engine.store.layout import RunLayout
from engine.store.runs import RunError

KINDS = ("accuracy", "miou", "episodes")
MAX_ITEMS = 10_000_000


@dataclass
class Outcomes:
    kind: str
    ids: list[int] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)
    tp: list[list[float]] = field(default_factory=list)
    predicted: list[list[float]] = field(default_factory=list)
    actual: list[list[float]] = field(default_factory=list)
    episode_acc: list[float] = field(default_factory=list)
    shots: int | None = None

    def __len__(self) -> int:
        return len(self.episode_acc) if self.kind == "episodes" else len(self.ids)

    def same_items(self, other: Outcomes) -> bool:
        """Tested on the same images (or, for few-shot, the same number of fixed episodes
        at the same K)."""
        if self.kind != other.kind:
            return False
        if self.kind == "episodes":
            return (self.shots, len(self)) == (other.shots, len(other))
        return self.ids == other.ids


def write_outcomes(run_dir: Path, outcomes: Outcomes) -> None:
    d = {"kind": outcomes.kind}
    if outcomes.kind == "episodes":
        d.update(shots=outcomes.shots, episode_acc=[float(v) for v in outcomes.episode_acc])
    else:
        d["ids"] = [int(i) for i in outcomes.ids]
    if outcomes.kind == "accuracy":
        d["correct"] = [int(bool(v)) for v in outcomes.correct]
    if outcomes.kind == "miou":
        for key in ("tp", "predicted", "actual"):
            d[key] = [[int(v) for v in row] for row in getattr(outcomes, key)]
    write_json(RunLayout(run_dir).test_outcomes, d)


def _numbers(value, path: Path, key: str, whole: bool) -> list:
    kinds = (int,) if whole else (int, float)
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        raise RunError(f"{path} is damaged: {key!r} must be a list")
    if not all(isinstance(v, kinds) and not isinstance(v, bool) for v in value):
        raise RunError(f"{path} is damaged: {key!r} must hold only numbers")
    return value


def read_outcomes(run_dir: Path) -> Outcomes | None:
    """The run's test outcomes; None when it has none (not tested yet, or older than them)."""
    path = RunLayout(run_dir).test_outcomes
    if not path.exists():
        return None
    try:
        d = read_json_object(path)
    except (OSError, ValueError) as e:
        raise RunError(f"{path} is damaged: {e}") from None
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in KINDS:
        raise RunError(f"{path} is damaged: 'kind' must be one of {', '.join(KINDS)}")
    if kind == "episodes":
        shots = d.get("shots")
        if not isinstance(shots, int) or isinstance(shots, bool):
            raise RunError(f"{path} is damaged: 'shots' must be a whole number")
        acc = _numbers(d.get("episode_acc"), path, "episode_acc", whole=False)
        if not all(0 <= v <= 1 for v in acc):
            raise RunError(f"{path} is damaged: 'episode_acc' must lie in [0, 1]")
        return Outcomes(kind, episode_acc=acc, shots=shots)
    ids = _numbers(d.get("ids"), path, "ids", whole=True)
    if kind == "accuracy":
        correct = _numbers(d.get("correct"), path, "correct", whole=True)
        if len(correct) != len(ids) or not set(correct) <= {0, 1}:
            raise RunError(f"{path} is damaged: 'correct' must be one 0 or 1 per id")
        return Outcomes(kind, ids=ids, correct=correct)
    rows = {}
    for key in ("tp", "predicted", "actual"):
        value = d.get(key)
        if not isinstance(value, list) or len(value) != len(ids):
            raise RunError(f"{path} is damaged: {key!r} must hold one row per id")
        rows[key] = [_numbers(r, path, key, whole=True) for r in value]
    classes = {len(r) for key in rows for r in rows[key]}
    if len(classes) > 1:
        raise RunError(f"{path} is damaged: 'tp', 'predicted' and 'actual' rows differ in length")
    for tp, predicted, actual in zip(rows["tp"], rows["predicted"], rows["actual"], strict=True):
        if any(t < 0 or t > p or t > a for t, p, a in zip(tp, predicted, actual, strict=True)):
            raise RunError(f"{path} is damaged: pixel counts must satisfy 0 <= tp <= predicted "
                           f"and tp <= actual")  # fmt: skip
    return Outcomes(kind, ids=ids, **rows)
