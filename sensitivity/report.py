"""Plain-language and tabular views of a prediction."""

from __future__ import annotations

import numpy as np

from sensitivity.labels import CLASS_NAMES


def probability_table(probabilities: np.ndarray) -> list[dict]:
    """Rows ``{"class", "probability (%)"}`` for all ten classes, most probable first."""
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    order = np.argsort(-probabilities, kind="stable")
    return [
        {"class": CLASS_NAMES[i], "probability (%)": round(100 * float(probabilities[i]), 2)}
        for i in order
    ]


def verdict(probabilities: np.ndarray) -> str:
    """The original experiment's sentence for the most probable class.

    For example "There's about 99.8% chance that there is at least one bird in the image".
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    top = int(np.argmax(probabilities))
    percent = 100 * float(probabilities[top])
    shown = f"{percent:.1f}" if percent < 99.95 else "99.9+"
    name = CLASS_NAMES[top]
    return f"There's about {shown}% chance that there is at least one {name} in the image"
