"""Accuracy of a model on labelled images."""

from __future__ import annotations

import numpy as np

from sensitivity.engine.inference import logits
from sensitivity.model.cards import model_card


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts for ``num_classes`` = K; row = true class, column = predicted."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
    return matrix


def accuracy_report(model, images: np.ndarray, labels: np.ndarray,
                    values: np.ndarray | None = None) -> dict:
    """Top-1 accuracy, per-class accuracy (by the class names of the model's card) and the
    confusion matrix (a list) of ``(N, H, W, 3)`` images with ``(N,)`` int labels; ``values``:
    their ``(N, K)`` logits when already computed."""
    names = model_card(model).class_names
    if len(labels) and int(np.max(labels)) >= len(names):
        raise ValueError(f"the images are labelled up to class {int(np.max(labels))} but the "
                         f"model's card names {len(names)} classes")
    predicted = (logits(model, images) if values is None else values).argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, len(names))
    per_class = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "n": int(len(labels)),
        "per_class": {name: float(a) for name, a in zip(names, per_class, strict=True)},
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict) -> str:
    """The report as a plain-text table."""
    lines = [f"top-1 accuracy: {100 * report['accuracy']:.2f}% on {report['n']} images", ""]
    lines.append("per-class accuracy:")
    for name, acc in report["per_class"].items():
        lines.append(f"  {name:<11}{100 * acc:6.2f}%")
    lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
    names = list(report["per_class"])
    lines.append(" " * 11 + "".join(f"{name[:5]:>6}" for name in names))
    for name, row in zip(names, report["confusion_matrix"], strict=True):
        lines.append(f"{name:<11}" + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)
