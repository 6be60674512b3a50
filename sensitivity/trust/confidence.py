"""Fitting a model's confidence from data, storing it beside the model, and measuring it.

:func:`fit_confidence` fits, on the validation part of the training split only (the trainer's
held-out images, :func:`sensitivity.model.data.train_val_split`), the temperature
(:func:`sensitivity.trust.calibration.fit_temperature`) and the out-of-distribution detector
(:func:`sensitivity.trust.ood.fit_detector`: Gaussians on the training part, the rule chosen and the
threshold set on validation images and validation outliers). :func:`write_confidence` stores
both with the model: the scalars in its card, the Gaussians in ``NAME.ood.npz``, whose sha256
the card records and :func:`sensitivity.model.io.load_model` checks.
:func:`confidence_report` measures them on the test split and test outliers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import softmax

from sensitivity.trust.calibration import calibration_report, fit_temperature, reliability
from sensitivity.trust.ood import (
    Detector,
    auroc,
    detector_card,
    fit_detector,
    model_features,
    score,
)

DEFAULT_LAYERS = ("pool", "group2")
"""Feature layers of the Mahalanobis candidates for the shipped WRN: the penultimate layer
(pooled final features) and the middle group's output, averaged over positions."""

OUTLIERS_PER_KIND = {"validation": 200, "test": 300}
"""Outlier pictures per kind (:mod:`sensitivity.trust.outliers`) for fitting and for reporting."""

SHARED_PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "photos"
"""The shared photographs, seen from a checkout beside ``shared/``."""

STATISTICS_SUFFIX = ".ood.npz"
"""The detector's Gaussians are stored in ``NAME.ood.npz`` beside ``NAME.keras``."""


@dataclass(frozen=True)
class Confidence:
    """A fitted temperature and detector, with the validation figures that chose them."""

    temperature: float
    detector: Detector
    validation: dict


def _split(data_dir, train_limit: int | None, val_size: int, seed: int):
    from sensitivity.model import data

    images, labels = data.load_split(data_dir, "train")
    (x_train, y_train), (x_val, y_val) = data.train_val_split(images, labels, val_size, seed)
    if train_limit is not None and train_limit < len(x_train):
        keep = np.sort(np.random.default_rng(0).permutation(len(x_train))[:train_limit])
        x_train, y_train = x_train[keep], y_train[keep]
    return (x_train, y_train), (x_val, y_val)


def fit_confidence(
    model,
    data_dir: str | os.PathLike,
    photos_dir: str | os.PathLike | None,
    *,
    layers: tuple[str, ...] = DEFAULT_LAYERS,
    train_limit: int | None = None,
    outliers_per_kind: int = OUTLIERS_PER_KIND["validation"],
    val_size: int | None = None,
    seed: int | None = None,
) -> Confidence:
    """Fit the temperature and the detector of ``model`` on CIFAR-10 class folders
    ``data_dir`` (``train/``; the test split is never read) and validation outliers (persons
    from ``photos_dir``). ``train_limit``: fit the Gaussians on a random subset of that many
    training images (default: all 45,000). ``val_size``, ``seed``: the held-out part's size and
    seed, as the model was trained (default: the trainer's,
    :class:`sensitivity.model.train.TrainConfig`),
    so that the part is the one the model never saw."""
    from sensitivity.model.train import TrainConfig
    from sensitivity.trust.outliers import outlier_set

    (x_train, y_train), (x_val, y_val) = _split(
        data_dir,
        train_limit,
        TrainConfig.val_size if val_size is None else val_size,
        TrainConfig.seed if seed is None else seed,
    )
    train_logits, train_features = model_features(model, layers, x_train.astype(np.float32))
    val_logits, val_features = model_features(model, layers, x_val.astype(np.float32))
    outliers, kinds = outlier_set(
        "validation", outliers_per_kind, pool=x_val, photos_dir=photos_dir
    )
    out_logits, out_features = model_features(model, layers, outliers)
    temperature = fit_temperature(val_logits, y_val)
    detector, aurocs = fit_detector(
        layers,
        (train_logits, train_features, y_train),
        (val_logits, val_features),
        (out_logits, out_features),
    )
    inliers = score(detector, val_logits, val_features)
    validation = {
        "images": int(len(y_val)),
        "outliers": {kind: int(np.sum(kinds == kind)) for kind in dict.fromkeys(kinds)},
        "train_images_for_gaussians": int(len(y_train)),
        "raw": calibration_report(val_logits, y_val),
        "calibrated": calibration_report(val_logits, y_val, temperature),
        "auroc_by_rule": aurocs,
        "flagged_share": float(np.mean(inliers > detector.threshold)),
    }
    return Confidence(temperature, detector, validation)


def statistics_path(model_path: str | os.PathLike) -> Path:
    """Where the detector's Gaussians of a model file live: ``NAME.ood.npz``."""
    path = Path(model_path)
    return path.with_name(path.stem + STATISTICS_SUFFIX)


def write_confidence(model_path: str | os.PathLike, confidence: Confidence,
                     test: dict | None = None) -> dict:
    """Store ``confidence`` with the model at ``model_path``: the Gaussians in
    :func:`statistics_path`, the temperature and detector (with the statistics file's sha256
    and the ``validation`` and optional ``test`` figures) in the card. Returns the card."""
    from sensitivity.model.io import read_model_card, sha256_of, write_model_card
    from sensitivity.trust.ood import save_statistics

    stats = statistics_path(model_path)
    save_statistics(confidence.detector, stats)
    card = read_model_card(model_path)
    card["calibration"] = {
        "method": "temperature scaling: probabilities = softmax(logits / temperature), the "
                  "temperature minimising the negative log-likelihood on the validation part "
                  "of the training split",
        "temperature": confidence.temperature,
        "validation": {k: confidence.validation[k] for k in ("images", "raw", "calibrated")},
    }
    card["out_of_distribution"] = {
        **detector_card(confidence.detector),
        "flagged_share": confidence.validation["flagged_share"],
        "statistics": stats.name,
        "statistics_sha256": sha256_of(stats),
        "validation": {k: confidence.validation[k] for k in
                       ("outliers", "train_images_for_gaussians", "auroc_by_rule")},
    }
    if test is not None:
        card["calibration"]["test"] = {k: test[k] for k in ("raw", "calibrated")}
        card["out_of_distribution"]["test"] = {
            k: test[k] for k in ("auroc", "auroc_by_kind", "false_alarm_rate", "flagged_by_kind")
        }
    return write_model_card(model_path, card)


def confidence_report(
    images: np.ndarray,
    labels: np.ndarray,
    temperature: float,
    logits: np.ndarray,
    features: dict[str, np.ndarray] | None = None,
    outliers: tuple[np.ndarray, dict[str, np.ndarray], np.ndarray] | None = None,
    detector: Detector | None = None,
) -> dict:
    """Calibration figures (raw and with ``temperature``, reliability tables) of ``(N, K)``
    logits of labelled in-distribution images; with a ``detector``, also its figures from the
    images' ``features`` and the ``outliers`` ``(logits, features, kinds)``: pooled AUROC,
    AUROC and flagged share per kind, false-alarm rate on the images."""
    logits = np.asarray(logits, np.float64)
    report = {
        "images": int(len(labels)),
        "raw": calibration_report(logits, labels),
        "calibrated": calibration_report(logits, labels, temperature),
        "reliability_raw": reliability(softmax(logits, axis=1), labels),
        "reliability_calibrated": reliability(softmax(logits / temperature, axis=1), labels),
    }
    if detector is None or outliers is None:
        return report
    inliers = score(detector, logits, features)
    outlying = score(detector, outliers[0], outliers[1])
    by_kind = {kind: outliers[2] == kind for kind in dict.fromkeys(outliers[2])}
    report.update({
        "auroc": auroc(outlying, inliers),
        "auroc_by_kind": {k: auroc(outlying[m], inliers) for k, m in by_kind.items()},
        "false_alarm_rate": float(np.mean(inliers > detector.threshold)),
        "flagged_by_kind": {k: float(np.mean(outlying[m] > detector.threshold))
                            for k, m in by_kind.items()},
    })
    return report


def measure_confidence(model, images: np.ndarray, labels: np.ndarray, photos_dir,
                       temperature: float, detector: Detector | None,
                       per_kind: int = OUTLIERS_PER_KIND["test"],
                       computed: tuple[np.ndarray, dict] | None = None) -> dict:
    """:func:`confidence_report` of ``model`` on labelled test ``images`` (uint8 or float,
    0..255) and, with a detector, on ``per_kind`` test outliers of each kind (scrambled ones
    from ``images``). ``computed``: the images' :func:`model_features` for the detector's
    layers, when the caller has them already."""
    from sensitivity.trust.outliers import outlier_set

    layers = detector.layers if detector is not None else ()
    logits, features = computed or model_features(model, layers, images.astype(np.float32))
    outliers = None
    if detector is not None:
        pictures, kinds = outlier_set("test", per_kind, pool=images, photos_dir=photos_dir)
        outliers = (*model_features(model, layers, pictures), kinds)
    return confidence_report(images, labels, temperature, logits, features, outliers, detector)


def format_confidence(report: dict) -> str:
    """A :func:`confidence_report` as plain-text tables (percentages)."""
    lines = [f"calibration on {report['images']} images (ECE with 15 bins):",
             "             accuracy  mean top p    ECE      NLL   Brier"]
    for name in ("raw", "calibrated"):
        r = report[name]
        lines.append(f"  {name:<10} {100 * r['accuracy']:7.2f}%  {100 * r['mean_confidence']:9.2f}%"
                     f"  {100 * r['ece']:5.2f}%  {r['nll']:7.4f}  {r['brier']:.4f}")
    if "auroc" not in report:
        return "\n".join(lines)
    lines += ["", f"out of distribution: AUROC {report['auroc']:.3f} against all outliers; "
              f"{100 * report['false_alarm_rate']:.1f}% of these images flagged",
              "  kind         AUROC   flagged"]
    for kind, value in report["auroc_by_kind"].items():
        lines.append(f"  {kind:<11} {value:6.3f}  {100 * report['flagged_by_kind'][kind]:6.1f}%")
    return "\n".join(lines)


def run(args) -> int:
    """Fit, store and (with ``--report-test``) measure, for parsed ``args``; returns 0. The
    validation part is the one the card's recipe held out (``val_size``, ``seed``)."""
    from sensitivity.model.io import load_model_alone, model_path, read_model_card

    path = Path(args.model) if args.model else model_path()
    model = load_model_alone(path)  # the old statistics are about to be replaced
    recipe = read_model_card(path).get("recipe") or {}
    confidence = fit_confidence(model, args.data_dir, args.photos_dir,
                                layers=tuple(args.layers), train_limit=args.train_limit,
                                val_size=recipe.get("val_size"), seed=recipe.get("seed"),
                                outliers_per_kind=args.outliers or OUTLIERS_PER_KIND["validation"])
    v = confidence.validation
    print(f"temperature {confidence.temperature:.4f}: validation ECE "
          f"{100 * v['raw']['ece']:.2f}% -> {100 * v['calibrated']['ece']:.2f}%")
    for rule, value in v["auroc_by_rule"].items():
        print(f"  validation AUROC {value:.3f}  {rule}")
    print(f"chosen: {' + '.join(confidence.detector.components)}, threshold "
          f"{confidence.detector.threshold:.3f}")
    test = None
    if args.report_test:
        from sensitivity.model.data import load_split

        images, labels = load_split(args.data_dir, "test")
        test = measure_confidence(model, images, labels, args.photos_dir, confidence.temperature,
                                  confidence.detector, args.outliers or OUTLIERS_PER_KIND["test"])
        print(format_confidence(test))
    write_confidence(path, confidence, test)
    print(f"written: {path.with_suffix('.json')} and {statistics_path(path)}")
    return 0
