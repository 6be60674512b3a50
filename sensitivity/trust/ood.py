"""Does a picture show any of the model's classes at all? An out-of-distribution score.

A score is the sum of standardised *components*, each computed from one forward pass:

- ``"max_logit"``: minus the largest logit;
- ``"energy"``: minus ``logsumexp`` of the logits (Liu et al. 2020);
- ``"mahalanobis:LAYER"``: the smallest squared Mahalanobis distance of the layer's features
  (averaged over positions when the layer is spatial) to the class means, under one covariance
  shared by the classes, both fitted on training images (Lee et al. 2018, without input
  perturbation).

Each component is standardised by its mean and standard deviation on in-distribution
validation images, so a score is in units of those standard deviations; higher means less like
the training data. :func:`fit_detector` chooses the candidate rule (:func:`candidate_rules`)
with the largest AUROC on validation images against validation outliers
(:mod:`sensitivity.trust.outliers`) and sets the threshold so that :data:`FLAGGED_SHARE` of the
in-distribution validation images are flagged. The fitted :class:`Detector` lives beside the
model (card + ``.npz``, loaded by :func:`sensitivity.model.io.load_model`, which attaches it);
:func:`out_of_distribution` scores images with the detector attached to a model.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

FLAGGED_SHARE = 0.05
"""Share of in-distribution validation images the threshold flags."""

_RIDGE = 1e-6  # added to the covariance's diagonal, relative to its mean variance
_DETECTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Gaussians:
    """Class-conditional Gaussians of one layer's features: ``means`` ``(C, D)`` and the shared
    covariance's inverse ``precision`` ``(D, D)``, float64."""

    means: np.ndarray
    precision: np.ndarray


@dataclass(frozen=True)
class Detector:
    """A fitted out-of-distribution rule: its ``components``, their in-distribution validation
    ``centre`` and ``scale``, the ``threshold`` on the summed standardised score, and the
    :class:`Gaussians` of every layer a Mahalanobis component uses."""

    components: tuple[str, ...]
    centre: tuple[float, ...]
    scale: tuple[float, ...]
    threshold: float
    gaussians: dict[str, Gaussians] = field(default_factory=dict)

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers whose features the score needs (besides the logits)."""
        return tuple(c.split(":", 1)[1] for c in self.components if c.startswith("mahalanobis:"))


def pooled(features: np.ndarray) -> np.ndarray:
    """``(N, D)`` float64: ``(N, h, w, D)`` features averaged over positions, ``(N, D)`` as is."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=tuple(range(1, features.ndim - 1))) if features.ndim > 2 else features


def fit_gaussians(features: np.ndarray, labels: np.ndarray) -> Gaussians:
    """Class means and the inverse of the shared (pooled within-class) covariance of ``(N, D)``
    features with ``(N,)`` int labels; every class in ``0..max(labels)`` needs an image."""
    features = pooled(features)
    labels = np.asarray(labels, np.int64)
    classes = np.arange(labels.max() + 1)
    if not all(np.any(labels == c) for c in classes):
        raise ValueError("every class needs at least one image to fit its mean")
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    ridge = _RIDGE * np.trace(covariance) / len(covariance)
    precision = np.linalg.inv(covariance + ridge * np.eye(len(covariance)))
    return Gaussians(means, (precision + precision.T) / 2)


def mahalanobis(gaussians: Gaussians, features: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 smallest squared Mahalanobis distance of ``(N, D)`` (or spatial)
    features to the class means."""
    diff = pooled(features)[:, None, :] - gaussians.means[None]
    return np.einsum("ncd,de,nce->nc", diff, gaussians.precision, diff).min(axis=1)


def component(name: str, logits: np.ndarray, features: dict[str, np.ndarray],
              gaussians: dict[str, Gaussians]) -> np.ndarray:
    """``(N,)`` float64 values of the component ``name`` (higher = less like the training
    data) from ``(N, K)`` logits and each layer's features."""
    logits = np.asarray(logits, np.float64)
    if name == "max_logit":
        return -logits.max(axis=1)
    if name == "energy":
        return -logsumexp(logits, axis=1)
    if name.startswith("mahalanobis:"):
        layer = name.split(":", 1)[1]
        return mahalanobis(gaussians[layer], features[layer])
    raise ValueError(f"unknown component {name!r}")


def candidate_rules(layers: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The rules :func:`fit_detector` chooses from, by name: each logit score alone, each
    layer's Mahalanobis distance alone, the distances of all ``layers`` summed, and that sum
    with the energy."""
    distances = tuple(f"mahalanobis:{layer}" for layer in layers)
    rules = {"max_logit": ("max_logit",), "energy": ("energy",)}
    rules.update({d: (d,) for d in distances})
    if len(distances) > 1:
        rules["+".join(distances)] = distances
    rules["+".join(("energy", *distances))] = ("energy", *distances)
    return rules


def auroc(outliers: np.ndarray, inliers: np.ndarray) -> float:
    """Area under the ROC curve: the chance that an outlier scores above an inlier (ties
    count half), from the two ``(N,)`` score arrays (Mann-Whitney U)."""
    from scipy.stats import rankdata

    outliers, inliers = np.asarray(outliers, np.float64), np.asarray(inliers, np.float64)
    ranks = rankdata(np.concatenate([inliers, outliers]))[len(inliers):]
    n, m = len(outliers), len(inliers)
    return float((ranks.sum() - n * (n + 1) / 2) / (n * m))


def score(detector: Detector, logits: np.ndarray, features: dict[str, np.ndarray]) -> np.ndarray:
    """``(N,)`` float64 score: the detector's components standardised and summed."""
    total = np.zeros(len(logits))
    for name, centre, scale in zip(detector.components, detector.centre, detector.scale,
                                   strict=True):
        total += (component(name, logits, features, detector.gaussians) - centre) / scale
    return total


def fit_detector(
    layers: tuple[str, ...],
    train: tuple[np.ndarray, dict[str, np.ndarray], np.ndarray],
    validation: tuple[np.ndarray, dict[str, np.ndarray]],
    outliers: tuple[np.ndarray, dict[str, np.ndarray]],
    flagged_share: float = FLAGGED_SHARE,
) -> tuple[Detector, dict[str, float]]:
    """Fit every :func:`candidate_rules` rule and keep the best; returns it with the validation
    AUROC of every candidate.

    ``train``: ``(logits, features by layer, labels)`` of training images (the Gaussians);
    ``validation`` and ``outliers``: ``(logits, features by layer)`` of in-distribution
    validation images and of validation outliers (the choice, the standardisation and the
    threshold, which flags ``flagged_share`` of the validation images).
    """
    gaussians = {layer: fit_gaussians(train[1][layer], train[2]) for layer in layers}
    fitted, aurocs = {}, {}
    for name, components in candidate_rules(layers).items():
        values = [component(c, validation[0], validation[1], gaussians) for c in components]
        centre = tuple(float(v.mean()) for v in values)
        scale = tuple(float(max(v.std(), 1e-12)) for v in values)
        rule = Detector(components, centre, scale, 0.0, gaussians)
        inliers = score(rule, *validation)
        threshold = float(np.quantile(inliers, 1.0 - flagged_share))
        fitted[name] = Detector(components, centre, scale, threshold,
                                {layer: gaussians[layer] for layer in rule.layers})
        aurocs[name] = auroc(score(rule, *outliers), inliers)
    best = max(aurocs, key=aurocs.get)
    return fitted[best], aurocs


# --------------------------------------------------------------------------------------------
# A detector beside a model: stored, attached, applied.


def attach_detector(model, detector: Detector | None) -> None:
    """Make ``detector`` the one :func:`out_of_distribution` uses for ``model`` (None: forget)."""
    if detector is None:
        _DETECTORS.pop(model, None)
    else:
        _DETECTORS[model] = detector


def detector_of(model) -> Detector | None:
    """The detector attached to ``model``, or None."""
    return _DETECTORS.get(model)


def detector_card(detector: Detector) -> dict:
    """The detector's scalars as a JSON-ready dict (the arrays go to :func:`save_statistics`)."""
    return {
        "components": list(detector.components),
        "centre": list(detector.centre),
        "scale": list(detector.scale),
        "threshold": detector.threshold,
    }


def save_statistics(detector: Detector, path: str | os.PathLike) -> None:
    """Write the detector's Gaussians to an ``.npz`` (plain arrays, no pickles)."""
    arrays = {}
    for layer, g in detector.gaussians.items():
        arrays[f"{layer}|means"] = g.means
        arrays[f"{layer}|precision"] = g.precision
    np.savez(path, **arrays)


def load_detector(card: dict, statistics: str | os.PathLike) -> Detector:
    """A :class:`Detector` from its :func:`detector_card` dict and the ``.npz`` of
    :func:`save_statistics` (read without pickles)."""
    with np.load(statistics, allow_pickle=False) as stored:
        gaussians = {}
        for key in stored.files:
            layer, part = key.rsplit("|", 1)
            gaussians.setdefault(layer, {})[part] = stored[key]
    detector = Detector(
        tuple(card["components"]), tuple(map(float, card["centre"])),
        tuple(map(float, card["scale"])), float(card["threshold"]),
        {layer: Gaussians(g["means"], g["precision"]) for layer, g in gaussians.items()},
    )
    missing = set(detector.layers) - set(detector.gaussians)
    if missing:
        raise ValueError(f"the statistics lack the layers {sorted(missing)}")
    return detector


def model_features(model, layers: tuple[str, ...], images: np.ndarray, max_batch: int = 256
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits ``(N, K)`` and each layer's position-averaged features ``(N, D)`` of ``(N, H, W,
    3)`` pixel values 0..255, from one forward pass."""
    from sensitivity.engine.gradients import layers_forward
    from sensitivity.engine.inference import as_batch

    outputs, logits = layers_forward(model, list(layers), as_batch(images), max_batch=max_batch)
    return logits, {layer: pooled(f) for layer, f in zip(layers, outputs, strict=True)}


def out_of_distribution(model, images, detector: Detector | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(N,)`` float32 and flags ``(N,)`` bool (score above the threshold) of
    ``(N, H, W, 3)`` (or one ``(H, W, 3)``) pixel values 0..255, with ``detector`` or the one
    attached to ``model``; ValueError when it has none (a model card without one)."""
    detector = detector or detector_of(model)
    if detector is None:
        raise ValueError("this model has no out-of-distribution detector (its card names none; "
                         "fit one with `python -m sensitivity calibrate`)")
    logits, features = model_features(model, detector.layers, images)
    values = score(detector, logits, features)
    return values.astype(np.float32), values > detector.threshold


@dataclass(frozen=True)
class Assessment:
    """One picture's out-of-distribution ``score``, the detector's ``threshold`` and whether
    the score is above it (``flagged``)."""

    score: float
    threshold: float
    flagged: bool


def assess(model, image) -> Assessment | None:
    """:func:`out_of_distribution` of one ``(H, W, 3)`` picture (pixel values 0..255) with the
    threshold it was judged against; None when ``model`` has no detector."""
    detector = detector_of(model)
    if detector is None:
        return None
    scores, flags = out_of_distribution(model, np.asarray(image)[None], detector)
    return Assessment(float(scores[0]), detector.threshold, bool(flags[0]))
