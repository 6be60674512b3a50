"""Plain-language and tabular views of a prediction."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

PREDICTED_BAR = "#0072B2"  # blue of the Okabe-Ito palette, readable with colour blindness
OTHER_BAR = "#9DB4C8"


TABLE_ROWS = 10
"""Most classes the probability table lists by name (then one row for all the others)."""


def probability_bars_html(probabilities: np.ndarray, class_names: Sequence[str]) -> str:
    """The class probabilities (``(K,)``, 0..1) as a bar chart in a small HTML table: class
    (``class_names``, one per probability), a bar as long as the probability, the probability
    in percent; most probable first, its row in bold and its bar darker. With more than
    :data:`TABLE_ROWS` classes, the most probable ones and a last row "all N others" with the
    rest's total.

    Plain HTML with inline styles, built from the probabilities and the escaped class names of
    the model's card (nothing a visitor typed or uploaded), so a page can draw it as it is: a
    browser lays it out in a fraction of the time a chart library takes.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    _check_names(probabilities, class_names)
    order = np.argsort(-probabilities, kind="stable")
    shown = [(class_names[i], float(probabilities[i])) for i in order[:TABLE_ROWS]]
    if len(order) > TABLE_ROWS:
        rest = len(order) - TABLE_ROWS
        shown.append((f"all {rest} others", float(probabilities[order[TABLE_ROWS:]].sum())))
    rows = []
    for rank, (name, probability) in enumerate(shown):
        percent = 100 * probability
        weight = "font-weight:600;" if rank == 0 else ""
        colour = PREDICTED_BAR if rank == 0 else OTHER_BAR
        rows.append(
            f'<tr style="{weight}">'
            f'<td style="padding:1px 8px 1px 0;white-space:nowrap;border:none">'
            f"{escape(name)}</td>"
            '<td style="width:100%;padding:1px 0;border:none">'
            f'<div style="width:{min(max(percent, 0.0), 100.0):.2f}%;min-width:1px;height:14px;'
            f'background:{colour};border-radius:2px"></div></td>'
            '<td style="padding:1px 0 1px 8px;text-align:right;white-space:nowrap;border:none;'
            f'font-variant-numeric:tabular-nums">{percent:.1f}%</td></tr>'
        )
    return ('<table aria-label="class probabilities" style="width:100%;border-collapse:collapse;'
            'border:none;font-size:0.85rem;line-height:1.5;margin:0">'
            + "".join(rows) + "</table>")


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "ten", "eleven", "twelve")


def _in_words(n: int) -> str:
    """A count as a word ("ten"), in digits from 13 on."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def _check_names(probabilities: np.ndarray, class_names: Sequence[str]) -> None:
    if len(class_names) != probabilities.size:
        raise ValueError(f"{probabilities.size} probabilities but {len(class_names)} class names")


def verdict(probabilities: np.ndarray, class_names: Sequence[str],
            out_of_distribution: bool = False) -> str:
    """The original experiment's sentence for the most probable class of ``(C,)``
    probabilities (0..1) of the classes ``class_names``.

    For example "There's about 99.8% chance that there is at least one bird in the image"; for
    a picture the out-of-distribution detector flags, a conditional one: "If this picture shows
    any of the ten classes, the model leans towards automobile (71.0%)".
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    _check_names(probabilities, class_names)
    top = int(np.argmax(probabilities))
    percent = 100 * float(probabilities[top])
    shown = f"{percent:.1f}" if percent < 99.95 else "99.9+"
    name = class_names[top]
    if out_of_distribution:
        return (f"If this picture shows any of the {_in_words(len(probabilities))} classes, "
                f"the model leans towards {name} ({shown}%)")
    return f"There's about {shown}% chance that there is at least one {name} in the image"


def out_of_distribution_notice(classes: int) -> str:
    """The page's notice above a flagged picture's maps, for a model of ``classes`` classes."""
    return (f"This picture may show none of the {_in_words(classes)} classes the model knows; "
            "its probabilities and maps say little here")


def out_of_distribution_note(score: float, threshold: float) -> str:
    """The out-of-distribution score against its threshold, in words (the page's hover)."""
    return (f"Out-of-distribution score {score:.2f} (threshold {threshold:.2f}; higher = less "
            "like the training images)")


def randomisation_note(method: str, correlation: float, threshold: float) -> str:
    """What the randomised-weights comparison shows: the Spearman rank ``correlation`` (-1..1)
    of ``method``'s maps by the trained model and by the model with its top layers
    re-initialised, judged against ``threshold``
    (:data:`sensitivity.metrics.sanity.RANDOMIZATION_THRESHOLD`)."""
    verdict_text = ("the map depends on what the model learned" if correlation < threshold else
                    "the map barely depends on what the model learned: it may show the image "
                    "more than the model")
    return (f"Rank correlation of the {method} maps, trained vs. top half of the layers "
            f"randomised (Adebayo et al. 2018): {correlation:.2f}; {verdict_text}.")


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


def method_note(method: str, size: int, native_size: int, layer: str = "logits") -> str:
    """What to say beside a map of ``method`` made at ``size`` pixels by a model of
    ``native_size``, explaining ``layer``, where the method is known to fail there
    (:meth:`sensitivity.engine.choices.MethodInfo.caveat_at`): "METHOD at N px: caveat"; ""
    elsewhere."""
    from sensitivity.engine.choices import METHODS

    caveat = METHODS[method].caveat_at(size, native_size, layer)
    return f"{method} at {size} px: {caveat}" if caveat else ""


def figures_label(method: str, options: dict, layer: str = "logits") -> str:
    """The label under which a model card's ``measured_localisation`` lists ``method`` with
    ``options`` explaining ``layer``: the method and those of its options measured apart
    (:attr:`sensitivity.engine.choices.Option.apart_in_figures`: switches, true/false and
    choice options, unless declared otherwise) that differ from their defaults
    (``cam:exponent=3,probability=True``), and the layer unless it is the logits
    (``layercam:layer=position_probabilities``); quantities such as a sample count keep the
    label of the method as measured."""
    from sensitivity.engine.choices import METHODS
    from sensitivity.imaging.rules import method_label

    declared = METHODS[method].options
    switches = {name: value for name, value in options.items() if name in declared
                and declared[name].apart_in_figures and value != declared[name].default}
    if layer != "logits":
        switches["layer"] = layer
    return method_label(method, switches)


def localisation_note(card, method: str, options: dict, layer: str = "logits") -> str:
    """How well ``method``'s maps (with ``options``, explaining ``layer``) localise with the
    model of ``card`` (a :class:`sensitivity.model.cards.ModelCard`), from its
    ``measured_localisation``: "with wrn-16-3 on photo-like test scenes at 96 px: pointing
    0.76, CorLoc 0.42"; "" when the card does not say."""
    label = figures_label(method, options, layer)
    figures = card.measured.figures(label) if card.measured else None
    if figures is None:
        return ""
    return (f"with {card.name} on photo-like test scenes at {card.measured.side} px: pointing "
            f"{figures[0]:.2f}, CorLoc {figures[1]:.2f}")


def objects_note(found) -> str:
    """What :func:`sensitivity.find_objects` found (its ``FoundObject`` list), in words: "boxes
    by gradcam at 96 px: dog 0.61, truck 0.22", each box's side named where they differ
    ("boxes by gradcam: dog 0.61 at 32 px, truck 0.22 at 96 px")."""
    if not found:
        return "boxes: no object found"
    if len({f.side for f in found}) == 1:
        listed = ", ".join(f"{f.label} {f.score:.2f}" for f in found)
        return f"boxes by {found[0].method} at {found[0].side} px: {listed}"
    listed = ", ".join(f"{f.label} {f.score:.2f} at {f.side} px" for f in found)
    return f"boxes by {found[0].method}: {listed}"


def flat_map_note(saliency_map, rule_side: int | None = None) -> str:
    """What to say of an ``(H, W)`` map that is the same everywhere
    (:func:`sensitivity.imaging.postprocess.is_flat`, an all-zero Grad-CAM, say); "" for any
    other map. ``rule_side``: the analysis side of the model's ``find_objects`` rule, named when
    the map is of another size."""
    from sensitivity.imaging.postprocess import is_flat

    if not is_flat(saliency_map):
        return ""
    value = float(np.asarray(saliency_map).flat[0])
    note = (f"The map is {value:.3g} everywhere: no pixel stands out for this class here, so the "
            "top-k pixels are only the first ones in reading order. Another class, method or "
            "analysis size may show more")
    if rule_side and rule_side != max(np.shape(saliency_map)):
        return f"{note}: find_objects makes this model's boxes at {rule_side} px."
    return note + "."
