"""Attribution methods: how much each input pixel contributes to a target score.

:func:`attribute` runs one method and returns an :class:`Attribution` holding the signed,
per-channel attribution ``(N, H, W, 3)`` (or ``(N, H, W)`` for the channel-free methods: Grad-CAM,
occlusion, CAM, LayerCAM, Score-CAM and RISE) with the scores it explains;
:mod:`sensitivity.engine.saliency` turns it into a map.
:data:`sensitivity.engine.choices.METHODS` declares the methods and their options; option
``scales`` fuses maps made at several image scales.

The package: :mod:`~sensitivity.methods.base` (the :class:`~sensitivity.methods.base.Job` a
method runs on: batching, chunking, class weights, progress; the result), one module per
method named as its key of ``METHODS`` (each declares its ``RUNNER``),
:mod:`~sensitivity.methods.path_sampling` (where Integrated Gradients takes its gradients) and
:mod:`~sensitivity.methods.entry` (:func:`attribute`, multi-scale fusion).

All gradients and forward passes come from the compiled engine in
:mod:`sensitivity.engine.gradients`;
SmoothGrad, Integrated Gradients, occlusion, Score-CAM and RISE push their samples through it
in batches of at most ``max_batch`` images (fewer for large images, see
:func:`sensitivity.engine.gradients.batch_size`), never one image at a time.
"""

from sensitivity.methods.base import Attribution
from sensitivity.methods.entry import SaturationWarning, attribute

__all__ = ["Attribution", "SaturationWarning", "attribute"]
