"""RISE (Petsiuk et al. 2018): scores of the image under random smooth masks over a fill."""

from __future__ import annotations

import numpy as np

from sensitivity.engine import gradients as engine
from sensitivity.methods.base import Job, Runner, fills, positive_int
from sensitivity.methods.localising import RiseMasks, blend


def run(job: Job) -> dict:
    """RISE, ``sum_n (S_n - mean S) M_n / (masks * keep)``, in score units.

    The original ``sum_n S_n M_n / (masks * keep)`` equals this plus ``mean S`` times the
    masks' empirical density ``sum_n M_n / (masks * keep)``, which is 1 on average and carries
    only the masks' Monte-Carlo unevenness, nothing about the model: subtracting the mean
    score removes that noise (a control variate), so fewer masks give a stable map. The
    expected value is ``Cov(S, M(x)) / keep``: positive where keeping the pixel raises the
    score, negative where it lowers it, zero where it does not matter.

    Default fill 'blur' (the original used black): a blurred copy keeps each image's colours
    and coarse layout, so a masked image loses only the detail under the dropped cells instead
    of gaining black blotches whose edges the network also reacts to; it is also Score-CAM's
    default, so the two compare. A blur still shows the coarse shape of a large object, which
    can weaken the signal; 'black' and 'mean' remain available.
    """
    opts = job.options
    count = positive_int("masks", opts["masks"])
    grid = positive_int("grid", opts["grid"])
    keep = opts["keep"]
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.number)) or not (
            0 < keep <= 1):
        raise ValueError(f"keep must be a probability in (0, 1], got {keep!r}")
    n, height, width = job.images.shape[:3]
    generator = RiseMasks(count, height, width, grid, float(keep), opts["seed"])
    fill = fills(job)
    weighted = np.zeros((n, height, width))  # sum_n S_n M_n per image
    mask_sums = np.zeros((n, height, width))  # sum_n M_n per image
    score_sums = np.zeros(n)
    for image_index, mask_index in job.index_chunks(count):
        masks = generator.take(mask_index)
        scores, _ = engine.forward(
            job.model, job.target, blend(job.images[image_index], fill[image_index], masks),
            job.weights[image_index], max_batch=job.max_batch,
        )
        for i in np.unique(image_index):
            rows = image_index == i
            weighted[i] += np.tensordot(scores[rows], masks[rows], axes=1)
            mask_sums[i] += masks[rows].sum(axis=0)
            score_sums[i] += scores[rows].sum()
        job.report((image_index[-1] * count + mask_index[-1] + 1) / (n * count))
    mean_scores = (score_sums / count)[:, None, None]
    return {"values": (weighted - mean_scores * mask_sums) / (count * float(keep))}


RUNNER = Runner(run)
