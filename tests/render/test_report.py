"""The notes the page and explain put beside a map."""

from __future__ import annotations

from sensitivity.engine.choices import METHODS
from sensitivity.imaging.discovery import Box
from sensitivity.imaging.objects import FoundObject
from sensitivity.model.cards import MeasuredLocalisation, ModelCard
from sensitivity.render.report import (
    figures_label,
    localisation_note,
    method_note,
    objects_note,
)


def test_a_methods_caveat_names_the_method_and_size_where_it_fails():
    caveat = METHODS["gradient"].caveat_at(64, 32)
    assert caveat and method_note("gradient", 64, 32) == f"gradient at 64 px: {caveat}"
    assert method_note("gradient", 32, 32) == ""  # at the native size it does not fail
    assert method_note("gradient", 64, 64) == ""
    assert method_note("gradcam", 64, 32) == ""
    assert method_note("gradient", 64, 32, "position_probabilities") == ""
    assert method_note("gradient", 64, 32, "log_probabilities") == f"gradient at 64 px: {caveat}"


def test_figures_label_keeps_the_switches_that_make_another_map():
    assert figures_label("cam", {"probability": False}) == "cam"
    assert figures_label("cam", {"probability": True}) == "cam:probability=True"
    # Quantities keep the method's label; a choice away from its default changes it.
    assert figures_label("smoothgrad", {"samples": 32, "noise": 0.2}) == "smoothgrad"
    assert figures_label("integrated_gradients", {"steps": 16, "baseline": "blurred"}) == (
        "integrated_gradients:baseline=blurred")
    assert figures_label("gradcam", {"layer_reduction": "mean", "plus_plus": True}) == (
        "gradcam:plus_plus=True")  # an option of every method is no switch of this one
    # A quantity declared measured apart (CAM's exponent) keeps its value in the label.
    assert figures_label("cam", {"probability": True, "exponent": 3}) == (
        "cam:exponent=3,probability=True")
    assert figures_label("cam", {"probability": True, "exponent": 1}) == "cam:probability=True"
    # A target other than the logits is part of the label; the logits are left out.
    assert figures_label("layercam", {}, "position_probabilities") == (
        "layercam:layer=position_probabilities")
    assert figures_label("gradcam", {"plus_plus": True}, "probabilities") == (
        "gradcam:layer=probabilities,plus_plus=True")
    assert figures_label("layercam", {}, "logits") == "layercam"


def test_localisation_note_quotes_the_picked_models_figures():
    measured = MeasuredLocalisation(144, "300 test scenes", (
        ("gradcam", 0.8412, 0.3), ("cam:probability=True", 0.905, 0.79),
        ("gradcam:layer=position_probabilities", 0.77, 0.5)))
    card = ModelCard(("a", "b"), 32, name="scenes-model", measured=measured)
    assert localisation_note(card, "gradcam", {"plus_plus": False}) == (
        "with scenes-model on photo-like test scenes at 144 px: pointing 0.84, CorLoc 0.30")
    assert localisation_note(card, "cam", {"probability": True}).endswith(
        "pointing 0.91, CorLoc 0.79")
    assert localisation_note(card, "cam", {"probability": False}) == ""  # not measured
    assert localisation_note(card, "gradcam", {"plus_plus": True}) == ""
    # The figures of the target explained: another target's are not quoted.
    assert localisation_note(card, "gradcam", {}, "position_probabilities").endswith(
        "pointing 0.77, CorLoc 0.50")
    assert localisation_note(card, "gradcam", {}, "probabilities") == ""
    assert localisation_note(ModelCard(("a", "b"), 32), "gradcam", {}) == ""  # no figures


def test_objects_note_names_the_side_of_each_box_where_they_differ():
    box = Box(0, 0, 4, 4, 1.0)
    dog = FoundObject(box, 5, "dog", 0.614, "gradcam", 96)
    truck = FoundObject(box, 9, "truck", 0.22, "gradcam", 96)
    assert objects_note([]) == "boxes: no object found"
    assert objects_note([dog, truck]) == "boxes by gradcam at 96 px: dog 0.61, truck 0.22"
    assert objects_note([dog, truck._replace(side=32)]) == (
        "boxes by gradcam: dog 0.61 at 96 px, truck 0.22 at 32 px")
