"""The out-of-distribution score: its parts against hand computations, its fit on synthetic
clusters, its storage, and the score of a model against an independent forward pass."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from scipy.special import logsumexp

import sensitivity
from sensitivity.trust import ood


def _clusters(rng, n, centres, spread=1.0):
    labels = rng.integers(0, len(centres), n)
    return centres[labels] + rng.normal(0, spread, (n, centres.shape[1])), labels


def test_fit_gaussians_gives_class_means_and_the_inverse_pooled_covariance():
    rng = np.random.default_rng(0)
    features, labels = _clusters(rng, 400, rng.normal(0, 5, (3, 4)))
    g = ood.fit_gaussians(features, labels)
    for c in range(3):
        np.testing.assert_allclose(g.means[c], features[labels == c].mean(axis=0))
    within = np.concatenate([features[labels == c] - features[labels == c].mean(0)
                             for c in range(3)])
    covariance = np.cov(within.T, bias=True)
    np.testing.assert_allclose(g.precision, np.linalg.inv(covariance), rtol=1e-4)


def test_spatial_features_are_averaged_over_positions():
    features = np.arange(2 * 3 * 3 * 2, dtype=np.float64).reshape(2, 3, 3, 2)
    np.testing.assert_allclose(ood.pooled(features), features.mean(axis=(1, 2)))


def test_mahalanobis_with_an_identity_precision_is_the_squared_distance_to_the_nearest_mean():
    g = ood.Gaussians(np.array([[0.0, 0.0], [10.0, 0.0]]), np.eye(2))
    points = np.array([[1.0, 1.0], [9.0, 3.0], [5.0, 0.0]])
    np.testing.assert_allclose(ood.mahalanobis(g, points), [2.0, 10.0, 25.0])


def test_logit_components_by_hand():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(ood.component("max_logit", logits, {}, {}), [-3.0, 0.0])
    np.testing.assert_allclose(ood.component("energy", logits, {}, {}),
                               [-np.log(np.exp(1) + np.exp(2) + np.exp(3)), -np.log(3)])
    with pytest.raises(ValueError, match="unknown component"):
        ood.component("softmax", logits, {}, {})


def test_auroc_is_the_share_of_outlier_inlier_pairs_in_the_right_order():
    rng = np.random.default_rng(1)
    outliers, inliers = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 60).round(1)
    pairs = [(o > i) + 0.5 * (o == i) for o, i in itertools.product(outliers, inliers)]
    assert ood.auroc(outliers, inliers) == pytest.approx(np.mean(pairs))
    assert ood.auroc(np.array([5.0]), np.array([1.0, 2.0])) == 1.0


def test_candidate_rules_cover_each_score_alone_and_the_sums():
    rules = ood.candidate_rules(("a", "b"))
    assert rules == {
        "max_logit": ("max_logit",),
        "energy": ("energy",),
        "mahalanobis:a": ("mahalanobis:a",),
        "mahalanobis:b": ("mahalanobis:b",),
        "mahalanobis:a+mahalanobis:b": ("mahalanobis:a", "mahalanobis:b"),
        "energy+mahalanobis:a+mahalanobis:b": ("energy", "mahalanobis:a", "mahalanobis:b"),
    }


def _synthetic_split(rng, centres, n, far=False):
    features, labels = _clusters(rng, n, centres)
    if far:  # outliers: between and beyond the clusters, where no class lives
        features = rng.normal(0, 12, features.shape)
    logits = -((features[:, None, :] - centres[None]) ** 2).sum(-1) / 50  # confident near a mean
    return logits, {"f": features}, labels


def test_fit_detector_prefers_the_feature_distance_when_the_logits_cannot_tell():
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 6, (4, 5))
    train = _synthetic_split(rng, centres, 2000)
    val_logits, val_features, _ = _synthetic_split(rng, centres, 1000)
    out_logits, out_features, _ = _synthetic_split(rng, centres, 500, far=True)
    # Make the outliers' logits look as confident as the inliers': only the features differ.
    out_logits = val_logits[:500]
    detector, aurocs = ood.fit_detector(("f",), train, (val_logits, val_features),
                                        (out_logits, out_features))
    assert detector.components == ("mahalanobis:f",)
    assert aurocs["mahalanobis:f"] > 0.95 and aurocs["energy"] == pytest.approx(0.5, abs=0.05)
    inliers = ood.score(detector, val_logits, val_features)
    assert np.mean(inliers > detector.threshold) == pytest.approx(ood.FLAGGED_SHARE, abs=0.002)
    # Standardised on the validation inliers: mean 0, unit spread.
    assert inliers.mean() == pytest.approx(0, abs=1e-9) and inliers.std() == pytest.approx(1)


def test_statistics_round_trip_and_pickles_are_refused(tmp_path):
    rng = np.random.default_rng(3)
    g = ood.Gaussians(rng.normal(size=(3, 4)), np.eye(4))
    detector = ood.Detector(("energy", "mahalanobis:pool"), (1.0, 2.0), (3.0, 4.0), 1.5,
                            {"pool": g})
    ood.save_statistics(detector, tmp_path / "s.npz")
    loaded = ood.load_detector(ood.detector_card(detector), tmp_path / "s.npz")
    assert loaded.components == detector.components and loaded.threshold == 1.5
    np.testing.assert_array_equal(loaded.gaussians["pool"].means, g.means)
    np.savez(tmp_path / "p.npz", **{"pool|means": np.array([object()], dtype=object),
                                    "pool|precision": np.eye(2)})
    with pytest.raises(ValueError, match="pickle"):
        ood.load_detector(ood.detector_card(detector), tmp_path / "p.npz")
    np.savez(tmp_path / "other.npz", **{"logits|means": g.means, "logits|precision": np.eye(4)})
    with pytest.raises(ValueError, match="lack the layers"):
        ood.load_detector(ood.detector_card(detector), tmp_path / "other.npz")


def _small_net():
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(conv)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(pooled))


def test_out_of_distribution_scores_a_model_as_an_independent_forward_pass_does():
    model = _small_net()
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 255, (6, 8, 8, 3)).astype(np.float32)
    detector = ood.Detector(
        ("energy", "mahalanobis:block"), (-3.0, 5.0), (2.0, 7.0), 0.4,
        {"block": ood.Gaussians(rng.normal(size=(3, 4)), np.diag([1.0, 2.0, 0.5, 1.5]))},
    )
    with pytest.raises(ValueError, match="no out-of-distribution detector"):
        sensitivity.out_of_distribution(model, images)
    ood.attach_detector(model, detector)
    scores, flags = sensitivity.out_of_distribution(model, images)
    assert scores.dtype == np.float32 and flags.dtype == bool and scores.shape == (6,)
    # Independently: Keras' own sub-model for the block's output, the formulas written out.
    block = keras.Model(model.input, model.get_layer("block").output)
    features = np.asarray(block(images), np.float64).mean(axis=(1, 2))
    logits = np.asarray(model(images), np.float64)
    g = detector.gaussians["block"]
    distance = np.min([np.einsum("nd,de,ne->n", features - m, g.precision, features - m)
                       for m in g.means], axis=0)
    expected = (-logsumexp(logits, axis=1) + 3.0) / 2.0 + (distance - 5.0) / 7.0
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(flags, expected > 0.4)
    one, _ = sensitivity.out_of_distribution(model, images[0])
    np.testing.assert_allclose(one, scores[:1], rtol=1e-5)


def test_assess_gives_one_pictures_score_threshold_and_flag_or_none_without_a_detector():
    model = _small_net()
    image = np.random.default_rng(5).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    assert ood.assess(model, image) is None
    logits = np.asarray(model(image[None]), np.float64)[0]
    expected = -logits.max() - 1.0  # max logit, centred on 1, scale 1
    for threshold, flagged in ((expected - 0.5, True), (expected + 0.5, False)):
        ood.attach_detector(model, ood.Detector(("max_logit",), (1.0,), (1.0,), threshold))
        found = ood.assess(model, image)
        assert found.score == pytest.approx(expected, rel=1e-5, abs=1e-5)
        assert found.threshold == threshold and found.flagged is flagged
