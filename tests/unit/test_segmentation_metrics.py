"""Per-pixel accuracy, the pixel confusion matrix and IoU as in the seed's course:
TP / (TP + FP + FN) over the whole set, Unknown pixels still counting as false positives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.data import ImageSet, SegmentationLoader
from engine.data.landcover import SCORED_CLASSES, UNKNOWN
from engine.experiments.segment import pixel_cross_entropy
from engine.train import Segmentation, Trainer
from engine.train.tasks import iou_per_class

CPU = torch.device("cpu")

# Three scored classes and Unknown = 3: small enough to count by hand.
TARGET = torch.tensor([[[0, 0, 1, 3], [1, 2, 3, 0]]])  # (1, 2, 4)
PRED = torch.tensor([[[0, 1, 1, 1], [1, 2, 0, 0]]])
# (true, predicted): (0,0) (0,1) (1,1) (3,1) / (1,1) (2,2) (3,0) (0,0)
HAND_CONFUSION = np.array(
    [
        [2, 1, 0],  # true 0
        [0, 2, 0],  # true 1
        [0, 0, 1],  # true 2
        [1, 1, 0],  # true Unknown: predicted 0 once and 1 once
    ]
)
# class 0: TP 2, FP 1 (the Unknown pixel), FN 1 -> 2 / 4
# class 1: TP 2, FP 2 (one true 0, one Unknown), FN 0 -> 2 / 4
# class 2: TP 1, FP 0, FN 0 -> 1
HAND_IOU = [0.5, 0.5, 1.0]


def one_hot_logits(pred: torch.Tensor, num_classes: int, scale: float = 5.0) -> torch.Tensor:
    """(B, H, W) predicted classes -> (B, C, H, W) logits whose argmax is `pred`."""
    return F.one_hot(pred, num_classes).permute(0, 3, 1, 2).float() * scale


def evaluate(task: Segmentation, batches) -> object:
    tally = task.tally(CPU)
    for logits, y in batches:
        tally.add(logits, y, F.cross_entropy(logits, y, ignore_index=task.ignore_index))
    return tally.result()


def course_iou(pred: np.ndarray, label: np.ndarray, num_classes: int = 6) -> np.ndarray:
    """The seed course's loop, on flattened arrays."""
    pred, label = pred.ravel(), label.ravel()
    out = []
    for i in range(num_classes):
        tp_fp = np.sum(pred == i)
        tp_fn = np.sum(label == i)
        tp = np.sum((pred == i) & (label == i))
        out.append(tp / (tp_fp + tp_fn - tp))
    return np.array(out)


def test_confusion_accuracy_and_iou_match_a_hand_count():
    task = Segmentation(3, ignore_index=3, class_names=("a", "b", "c"))
    result = evaluate(task, [(one_hot_logits(PRED, 3), TARGET)])
    np.testing.assert_array_equal(result.confusion, HAND_CONFUSION)
    assert result.acc == pytest.approx(5 / 6)  # 6 labelled pixels, 5 right
    assert result.metrics["iou/a"] == pytest.approx(HAND_IOU[0])
    assert result.metrics["iou/b"] == pytest.approx(HAND_IOU[1])
    assert result.metrics["iou/c"] == pytest.approx(HAND_IOU[2])
    assert result.metrics["miou"] == pytest.approx(2 / 3)
    assert result.score == result.metrics["miou"]
    np.testing.assert_allclose(iou_per_class(HAND_CONFUSION, 3), HAND_IOU)
    # Without the Unknown row, classes 0 and 1 would each score 2 / 3.
    assert iou_per_class(HAND_CONFUSION[:3], 3)[0] == pytest.approx(2 / 3)


def test_training_counts_are_labelled_pixels_only():
    task = Segmentation(3, ignore_index=3)
    right, counted = task.counts(one_hot_logits(PRED, 3), TARGET)
    assert (int(right), int(counted)) == (5, 6)


def test_a_class_neither_present_nor_predicted_has_no_iou_and_is_left_out_of_the_mean():
    task = Segmentation(4, ignore_index=4, class_names=("a", "b", "c", "d"))
    target = torch.where(TARGET == 3, 4, TARGET)  # Unknown is 4 now; class "d" never occurs
    result = evaluate(task, [(one_hot_logits(PRED, 4), target)])
    assert np.isnan(iou_per_class(result.confusion, 4)[3])
    assert "iou/d" not in result.metrics
    assert result.metrics["miou"] == pytest.approx(np.mean(HAND_IOU))  # not (sum) / 4
    assert result.confusion.shape == (5, 4)


def test_a_class_present_but_never_predicted_scores_zero():
    task = Segmentation(3, ignore_index=3, class_names=("a", "b", "c"))
    pred = torch.where(PRED == 2, 0, PRED)  # class 2 is never predicted
    result = evaluate(task, [(one_hot_logits(pred, 3), TARGET)])
    assert result.metrics["iou/c"] == 0.0
    assert result.metrics["miou"] == pytest.approx(np.mean(iou_per_class(result.confusion, 3)))


def test_land_cover_confusion_is_seven_true_rows_by_six_predicted_columns():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 7, (3, 8, 8), generator=g)
    logits = torch.randn(3, 6, 8, 8, generator=g)
    task = Segmentation(6, UNKNOWN, tuple(SCORED_CLASSES))
    result = evaluate(task, [(logits, target)])
    assert result.confusion.shape == (7, 6)
    assert result.confusion.sum() == target.numel()  # every pixel, Unknown ones included
    np.testing.assert_array_equal(result.confusion.sum(1), np.bincount(target.ravel(), minlength=7))
    assert set(result.metrics) == {"miou", *(f"iou/{c}" for c in SCORED_CLASSES)}
    assert result.predictions.numel() == 0 and result.labels.numel() == 0


def test_iou_accumulates_over_the_whole_set_not_per_batch():
    task = Segmentation(3, ignore_index=3, class_names=("a", "b", "c"))
    # The hand example split into its two rows, as two batches.
    batches = [(one_hot_logits(PRED[:, i : i + 1], 3), TARGET[:, i : i + 1]) for i in range(2)]
    result = evaluate(task, batches)
    np.testing.assert_array_equal(result.confusion, HAND_CONFUSION)
    assert result.metrics["miou"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iou_per_class_equals_the_course_formula_on_random_arrays(seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 7, (4, 32, 32))  # Unknown (6) included
    pred = rng.integers(0, 6, (4, 32, 32))
    cm = np.zeros((7, 6), dtype=np.int64)
    np.add.at(cm, (label.ravel(), pred.ravel()), 1)
    np.testing.assert_allclose(iou_per_class(cm, 6), course_iou(pred, label))
    # The same through the tally, from logits, in uneven batches.
    task = Segmentation(6, UNKNOWN, tuple(SCORED_CLASSES))
    logits = one_hot_logits(torch.from_numpy(pred), 6)
    y = torch.from_numpy(label)
    result = evaluate(task, [(logits[:1], y[:1]), (logits[1:], y[1:])])
    np.testing.assert_array_equal(result.confusion, cm)
    want = course_iou(pred, label)
    for name, value in zip(SCORED_CLASSES, want, strict=True):
        assert result.metrics[f"iou/{name}"] == pytest.approx(value)
    assert result.metrics["miou"] == pytest.approx(want.mean())
    valid = label != UNKNOWN
    assert result.acc == pytest.approx((pred == label)[valid].mean())


def test_loss_is_the_mean_over_labelled_pixels_of_every_batch():
    g = torch.Generator().manual_seed(3)
    task = Segmentation(6, UNKNOWN)
    logits = torch.randn(5, 6, 6, 6, generator=g)
    target = torch.randint(0, 7, (5, 6, 6), generator=g)
    target[0, :4] = UNKNOWN  # batches with different numbers of labelled pixels
    result = evaluate(task, [(logits[:2], target[:2]), (logits[2:], target[2:])])
    whole = F.cross_entropy(logits, target, ignore_index=UNKNOWN)
    assert result.loss == pytest.approx(whole.item(), rel=1e-5)
    # By hand: -log p(true class) averaged over the labelled pixels only.
    log_p = F.log_softmax(logits, 1)
    valid = target != UNKNOWN
    picked = log_p.gather(1, target.clamp_max(5)[:, None])[:, 0]
    assert result.loss == pytest.approx(-picked[valid].mean().item(), rel=1e-5)


def test_unknown_pixels_carry_no_loss_whatever_is_predicted_there():
    g = torch.Generator().manual_seed(4)
    task = Segmentation(6, UNKNOWN)
    logits = torch.randn(2, 6, 8, 8, generator=g)
    target = torch.randint(0, 6, (2, 8, 8), generator=g)
    target[:, :3] = UNKNOWN
    changed = logits.clone()
    changed[:, :, :3] = torch.randn(2, 6, 3, 8, generator=g) * 50  # only where Unknown
    assert evaluate(task, [(changed, target)]).loss == pytest.approx(
        evaluate(task, [(logits, target)]).loss
    )
    assert evaluate(task, [(changed, target)]).acc == evaluate(task, [(logits, target)]).acc


def test_the_run_s_loss_is_cross_entropy_over_labelled_pixels():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(3, 6, 5, 5, generator=g, requires_grad=True)
    target = torch.randint(0, 7, (3, 5, 5), generator=g)
    want = F.cross_entropy(logits, target, ignore_index=UNKNOWN)
    torch.testing.assert_close(pixel_cross_entropy(logits, target), want)


def test_a_batch_of_only_unknown_pixels_has_loss_zero_and_no_gradient():
    logits = torch.randn(2, 6, 4, 4, requires_grad=True)
    no_data = torch.full((2, 4, 4), UNKNOWN)
    assert torch.isnan(F.cross_entropy(logits, no_data, ignore_index=UNKNOWN))  # the trap
    loss = pixel_cross_entropy(logits, no_data)
    assert loss.item() == 0.0
    loss.backward()
    assert (logits.grad == 0).all()


def test_a_batch_of_only_unknown_pixels_leaves_the_evaluation_loss_alone():
    g = torch.Generator().manual_seed(5)
    task = Segmentation(6, UNKNOWN)
    logits = torch.randn(2, 6, 4, 4, generator=g)
    labelled = torch.randint(0, 6, (1, 4, 4), generator=g)
    no_data = torch.full((1, 4, 4), UNKNOWN)
    tally = task.tally(CPU)
    for lg, y in ((logits[:1], labelled), (logits[1:], no_data)):
        tally.add(lg, y, pixel_cross_entropy(lg, y))
    want = F.cross_entropy(logits[:1], labelled, ignore_index=UNKNOWN).item()
    assert tally.result().loss == pytest.approx(want)


def test_training_survives_a_tile_that_is_all_no_data():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    masks = torch.randint(0, 6, (4, 8, 8), dtype=torch.uint8)
    masks[1] = UNKNOWN  # a no-data tile, as DeepGlobe has at the edge of the map
    data = ImageSet(images, masks, torch.arange(4))
    model = nn.Conv2d(3, 6, 3, padding=1)

    def loader(shuffle):
        return SegmentationLoader(data, 1, [0.5] * 3, [0.25] * 3, "cpu", shuffle, False, 0)

    trainer = Trainer(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        train_loader=loader(True),
        val_loader=loader(False),
        epochs=1,
        loss_fn=pixel_cross_entropy,
        task=Segmentation(6, UNKNOWN),
        log_every=1,  # the no-data batch's loss is logged: it must be finite
    )
    state = trainer.fit()
    assert state.epoch == 1 and state.seen == 0  # sums are reset at the end of an epoch
    val = trainer.evaluate(loader(False))
    assert np.isfinite(val.loss) and np.isfinite(val.score)
    assert val.confusion[UNKNOWN].sum() == 64  # the no-data tile's pixels, all in row 6
