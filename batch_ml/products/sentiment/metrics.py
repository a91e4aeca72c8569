"""Classification quality: macro-F1, accuracy, per-class precision/recall/F1 and the confusion
matrix, over a fixed list of classes.

A class without predictions has precision 0, a class without support recall 0, and F1 is 0
whenever precision + recall is 0 (scikit-learn's `zero_division=0`): a class the model never
predicts, or one absent from the day, pulls macro-F1 down rather than being skipped, so a
degenerate model cannot look good by predicting one class. Labels outside `classes` are
refused."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def classification_metrics(y_true: Sequence, y_pred: Sequence, classes: Sequence) -> dict:
    """{"accuracy", "macro_f1", "classes", "per_class": {class: {precision, recall, f1,
    support}}, "confusion": rows = true class, columns = predicted class, in `classes` order}."""
    classes = list(classes)
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} labels, y_pred {pred.size}")
    position = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in (*true.tolist(), *pred.tolist()) if v not in position})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    if true.size:
        ti = np.array([position[v] for v in true.tolist()])
        pi = np.array([position[v] for v in pred.tolist()])
        np.add.at(confusion, (ti, pi), 1)
    return confusion_metrics(confusion, classes)


def confusion_metrics(confusion: np.ndarray, classes: Sequence) -> dict:
    """The same dict as `classification_metrics`, from a confusion matrix (rows true class,
    columns predicted, in `classes` order): the scores of summed daily counts."""
    confusion = np.asarray(confusion, dtype=np.int64)
    k = len(classes)
    per_class = {}
    for i, c in enumerate(classes):
        tp = confusion[i, i]
        precision = _ratio(tp, confusion[:, i].sum())
        recall = _ratio(tp, confusion[i, :].sum())
        per_class[str(c)] = {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": int(confusion[i, :].sum()),
        }
    return {
        "accuracy": _ratio(np.trace(confusion), confusion.sum()),
        "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])) if k else 0.0,
        "classes": [str(c) for c in classes],
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def macro_f1_of_confusion(confusion: np.ndarray) -> float:
    """Macro-F1 of a confusion matrix (rows true, columns predicted), the same zero rules:
    F1 = 2 tp / (support + predictions), 0 when both are 0."""
    confusion = np.asarray(confusion)
    tp = np.diag(confusion).astype(np.float64)
    den = confusion.sum(axis=1) + confusion.sum(axis=0)
    f1 = np.divide(2 * tp, den, out=np.zeros_like(tp), where=den > 0)
    return float(f1.mean()) if f1.size else 0.0
