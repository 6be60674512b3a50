"""The Gaussian and Sobel filters against hand-computed kernels and known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sensitivity.imaging.filters import gaussian_smooth, sobel_magnitude


def _kernel(sigma: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def test_impulse_response_is_the_sampled_gaussian_of_radius_ceil_3_sigma():
    impulse = np.zeros((25, 25))
    impulse[12, 12] = 1.0
    response = gaussian_smooth(impulse, 2.0)
    expected = np.zeros((25, 25))
    expected[6:19, 6:19] = np.outer(_kernel(2.0, 6), _kernel(2.0, 6))  # radius ceil(6) = 6
    np.testing.assert_allclose(response, expected, atol=1e-12)
    assert response.sum() == pytest.approx(1.0)
    offsets = np.arange(25) - 12
    variance = float((response.sum(axis=1) * offsets**2).sum())
    assert variance == pytest.approx(4.0, rel=0.03)  # sigma^2, less the tails beyond 3 sigma
    # sigma 1.5: radius ceil(4.5) = 5, so 11 taps.
    assert np.count_nonzero(gaussian_smooth(impulse, 1.5)[12]) == 11


def test_border_repeats_the_edge_pixel_then_mirrors():
    row = np.array([[0.0, 0.0, 0.0, 0.0, 9.0]])
    # sigma 0.5: radius 2, weights exp(-2 x^2); beyond the edge the row reads 9, 0, ...
    w = np.exp(-2.0 * np.arange(-2, 3) ** 2)
    out = gaussian_smooth(row, 0.5)
    assert out[0, 4] == pytest.approx(9 * (w[2] + w[3]) / w.sum())
    assert out[0, 3] == pytest.approx(9 * (w[3] + w[4]) / w.sum())


def test_constant_images_stay_constant_and_channels_do_not_mix():
    image = np.ones((9, 7, 3)) * np.array([10.0, 20.0, 30.0])
    for sigma in (0.7, 1.3, 5.0):  # 5: the kernel is wider than the image
        np.testing.assert_allclose(gaussian_smooth(image, sigma), image, rtol=1e-12)
    spot = np.zeros((9, 7, 3))
    spot[4, 3, 1] = 1.0
    smoothed = gaussian_smooth(spot, 1.0)
    assert (smoothed[..., 0] == 0).all() and (smoothed[..., 2] == 0).all()
    assert smoothed[..., 1].sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(gaussian_smooth(spot, 0), spot)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_smooth(spot, -1.0)
    with pytest.raises(ValueError, match="shape"):
        gaussian_smooth(np.zeros(5), 1.0)


def test_sobel_on_a_ramp():
    y, x = np.mgrid[0:6, 0:7]
    ramp = 3.0 * x + 5.0 * y
    magnitude = sobel_magnitude(ramp)
    # Inside: gx = (1 + 2 + 1) * (f(x + 1) - f(x - 1)) = 4 * 6, gy = 4 * 10.
    np.testing.assert_allclose(magnitude[1:-1, 1:-1], math.hypot(24, 40))
    # The first column reads f(-1) = f(0): half the difference along x.
    np.testing.assert_allclose(magnitude[1:-1, 0], math.hypot(12, 40))
    assert magnitude[0, 0] == pytest.approx(math.hypot(12, 20))
    assert (sobel_magnitude(np.full((4, 4), 7.0)) == 0).all()
