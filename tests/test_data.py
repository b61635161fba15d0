"""Training data: fixed, standardised, at the network's width and the sweep's input scale."""

import numpy as np
import pytest

from hevar.errors import UsageError
from hevar.experiments import data


@pytest.mark.parametrize("width", [16, 64, 256])
def test_digits_at_every_width_have_unit_second_moment_and_a_fixed_stratified_split(width):
    d = data.load("digits", width)
    assert d.x_train.shape == (1347, width) and d.x_test.shape == (450, width) and d.n_classes == 10
    assert np.mean(d.x_train**2) == pytest.approx(1.0, rel=1e-12)  # q⁰ = 1, as the sweep's inputs
    counts = np.bincount(d.y_train, minlength=10) / len(d.y_train)
    assert np.all(np.abs(counts - 0.1) < 0.01)  # stratified: every class near 10 %
    again = data.load("digits", width)
    assert np.array_equal(d.x_train, again.x_train) and np.array_equal(d.y_test, again.y_test)


def test_a_wide_embedding_keeps_the_geometry_of_the_pixels():
    """N_0 > 64 is an isometry up to one scale: Gram matrices agree after that scale."""
    narrow, wide = data.load("digits", 64), data.load("digits", 300)
    g_narrow, g_wide = narrow.x_train[:50] @ narrow.x_train[:50].T, wide.x_train[:50] @ wide.x_train[:50].T
    np.testing.assert_allclose(g_wide * 64 / 300, g_narrow, rtol=1e-10, atol=1e-10)
    q = data.embedding(300, 64, 0)
    np.testing.assert_allclose(q.T @ q, 300 / 64 * np.eye(64), atol=1e-12)


def test_narrow_digits_are_whitened_principal_components():
    d = data.load("digits", 8)
    cov = np.cov(d.x_train, rowvar=False)
    np.testing.assert_allclose(cov / cov[0, 0], np.eye(8), atol=1e-10)  # uncorrelated, equal variances


def test_the_teacher_is_deterministic_learnable_and_not_trivial():
    d = data.load("teacher", 32, n_train=4000, n_test=1000)
    assert np.array_equal(d.y_train, data.load("teacher", 32, n_train=4000, n_test=1000).y_train)
    counts = np.bincount(d.y_train, minlength=10)
    assert counts.max() < 0.5 * len(d.y_train) and (counts > 0).sum() >= 5
    # a linear readout of the teacher's own hidden features (least squares on one-hot labels) beats chance
    # by far: the labels are a function of the inputs, learnable by a network
    onehot = np.eye(10)[d.y_train]
    w, *_ = np.linalg.lstsq(np.c_[d.x_train, np.ones(len(d.x_train))], onehot, rcond=None)
    acc = np.mean(np.argmax(np.c_[d.x_test, np.ones(len(d.x_test))] @ w, axis=1) == d.y_test)
    assert acc > 0.3  # chance is at most the largest class share


def test_bad_names_and_widths_are_one_line_errors():
    with pytest.raises(UsageError, match="The 'data' parameter must be one of digits, teacher. Got 'mnist'"):
        data.load("mnist", 64)
    with pytest.raises(UsageError, match="The 'width' parameter must be a positive int"):
        data.load("digits", 0)
