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


def completeness_note(score: float, baseline_score: float, total: float) -> str:
    """How well Integrated Gradients' attributions add up: f(x) - f(baseline) vs their sum.

    ``score`` and ``baseline_score``: the explained score at the image and at the baseline;
    ``total``: the sum of the attributions. The relative gap is said to be unreliable when the
    two scores differ by less than 1 (in the score's units, logits by default).
    """
    change = score - baseline_score
    gap = abs(total - change)
    text = (f"Completeness: the attributions add up to {total:.3g}; the score changes by "
            f"{change:.3g} from the baseline ({baseline_score:.3g}) to the image ({score:.3g})")
    if abs(change) < 1.0:
        return (text + f": gap {gap:.3g}. The image scores about as high as the baseline, so "
                "the relative gap means little here; try another baseline.")
    return text + f": gap {100 * gap / abs(change):.1f}% (more steps make it smaller)."
