"""Accuracy of a model on labelled images."""

from __future__ import annotations

import numpy as np

from sensitivity.inference import logits
from sensitivity.labels import CLASS_NAMES, NUM_CLASSES


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``(10, 10)`` int64 counts; row = true class, column = predicted class."""
    matrix = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
    return matrix


def accuracy_report(model, images: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 accuracy, per-class accuracy (by class name) and the confusion matrix (a list)."""
    predicted = logits(model, images).argmax(axis=1)
    matrix = confusion_matrix(labels, predicted)
    per_class = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "n": int(len(labels)),
        "per_class": {name: float(a) for name, a in zip(CLASS_NAMES, per_class, strict=True)},
        "confusion_matrix": matrix.tolist(),
    }


def format_report(report: dict) -> str:
    """The report as a plain-text table."""
    lines = [f"top-1 accuracy: {100 * report['accuracy']:.2f}% on {report['n']} images", ""]
    lines.append("per-class accuracy:")
    for name, acc in report["per_class"].items():
        lines.append(f"  {name:<11}{100 * acc:6.2f}%")
    lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
    short = [name[:5] for name in CLASS_NAMES]
    lines.append(" " * 11 + "".join(f"{s:>6}" for s in short))
    for name, row in zip(CLASS_NAMES, report["confusion_matrix"], strict=True):
        lines.append(f"{name:<11}" + "".join(f"{v:>6}" for v in row))
    return "\n".join(lines)
