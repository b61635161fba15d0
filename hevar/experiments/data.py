"""Data for ``hevar train``: real images with no download, and a procedural task with no package.

Both come as a :class:`Dataset` whose inputs have the network's width N_0 and the same scale as the
sweep's inputs x ~ N(0, I): a mean per-coordinate second moment of 1 over the training set, so
q⁰ = 1 and the mean-field predictions of ``hevar sweep`` apply to the trained network at step 0.

``digits``
    scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: 1797 images of
    8×8 = 64 pixels, 10 classes, shipped inside the wheel). Split once, stratified by class, with a
    fixed seed (``train_test_split``; 25 % test). Pixels are standardised with the training set's
    mean and standard deviation (the always-blank border pixels, std 0, become 0). Then mapped to
    N_0 features:

    - N_0 < 64: principal components of the training set, whitened (scikit-learn's ``PCA``): the
      N_0 directions of largest variance, each of variance 1;
    - N_0 = 64: the standardised pixels;
    - N_0 > 64: a fixed isometric embedding x ↦ √(N_0/64)·Q x, Q of shape (N_0, 64) with
      orthonormal columns (QR of a Gaussian matrix drawn from the split seed): distances and angles
      between images are kept, and the scale makes the mean second moment per coordinate that of
      the pixels.

    Finally every feature is scaled by one common factor so the training set's mean squared
    coordinate is exactly 1.
``teacher``
    inputs x ~ N(0, I_{N_0}) and labels from a fixed random teacher: the argmax over classes of
    V·tanh(U x), U of shape (H, N_0) with variance 1/N_0, V of shape (classes, H) (H = 64). Any
    width, any size, only NumPy; learnable (a one-hidden-layer network can fit it), not trivial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hevar.errors import UsageError

DATASETS = ("digits", "teacher")
SPLIT_SEED = 0
TEST_FRACTION = 0.25
DIGITS_FEATURES = 64


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs as rows: ``x_train`` (n_train, N_0), integer labels ``y_train`` (n_train,), and the test set."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def width(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> str:
        return (f"{self.name}: {len(self.y_train)} train / {len(self.y_test)} test inputs of width {self.width}, "
                f"{self.n_classes} classes")


def load(name: str, width: int, *, seed: int = SPLIT_SEED, n_train: int = 2048, n_test: int = 1024) -> Dataset:
    """The data set ``name`` (one of :data:`DATASETS`) at input width ``width``."""
    if name not in DATASETS:
        raise UsageError(f"The 'data' parameter must be one of {', '.join(DATASETS)}. Got {name!r} instead.",
                         param="data")
    if not (isinstance(width, (int, np.integer)) and width >= 1):
        raise UsageError(f"The 'width' parameter must be a positive int. Got {width!r} instead.", param="width")
    if name == "digits":
        return digits(int(width), seed=seed)
    return teacher(int(width), n_train=n_train, n_test=n_test, seed=seed)


def _unit_scale(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = math.sqrt(float(np.mean(x_train**2)))
    return x_train / scale, x_test / scale


def digits(width: int, *, seed: int = SPLIT_SEED) -> Dataset:
    """scikit-learn's digits, standardised, split and mapped to ``width`` features (module docstring)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.decomposition import PCA
        from sklearn.model_selection import train_test_split
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise UsageError("The 'data' parameter 'digits' needs scikit-learn (pip install scikit-learn). Got it "
                         "missing; use --data teacher, which needs no package.", param="data") from None
    bunch = load_digits()
    x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, random_state=seed, stratify=y)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if width < DIGITS_FEATURES:
        pca = PCA(n_components=width, whiten=True, svd_solver="full").fit(x_train)
        x_train, x_test = pca.transform(x_train), pca.transform(x_test)
    elif width > DIGITS_FEATURES:
        q = embedding(width, DIGITS_FEATURES, seed)
        x_train, x_test = x_train @ q.T, x_test @ q.T
    x_train, x_test = _unit_scale(x_train, x_test)
    return Dataset("digits", x_train, y_train, x_test, y_test, 10)


def embedding(width: int, features: int, seed: int) -> np.ndarray:
    """√(width/features)·Q, Q of shape (width, features) with orthonormal columns, from ``seed``."""
    rng = np.random.default_rng([seed, width, features])
    q, r = np.linalg.qr(rng.standard_normal((width, features)))
    q *= np.sign(np.diag(r))  # a unique Q (Haar-distributed) rather than LAPACK's sign convention
    return math.sqrt(width / features) * q


def teacher(width: int, *, n_train: int = 2048, n_test: int = 1024, n_classes: int = 10, hidden: int = 64,
            seed: int = SPLIT_SEED) -> Dataset:
    """Gaussian inputs labelled by a fixed random one-hidden-layer tanh teacher (module docstring)."""
    rng = np.random.default_rng([seed, width, 7])
    u = rng.standard_normal((hidden, width)) / math.sqrt(width)
    v = rng.standard_normal((n_classes, hidden))
    x = rng.standard_normal((n_train + n_test, width))
    y = np.argmax(np.tanh(x @ u.T) @ v.T, axis=1).astype(np.int64)
    x_train, x_test = _unit_scale(x[:n_train], x[n_train:])
    return Dataset("teacher", x_train, y[:n_train], x_test, y[n_train:], n_classes)
