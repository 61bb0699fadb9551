"""The source documents' data sets, made in code (nothing is downloaded).

* :func:`higham_points`: Higham & Higham's 10 points in the unit square (their
  MATLAB ``netbp.m``), and the 11-point variant with class B at (0.3, 0.7).
* :func:`spiral`: cs231n's 3-class spiral (the cs231n program in Matrix Backprop (2019-05-15)), ``N`` points per class.
* :func:`random_regression`: the PyTorch-tutorial data (the PyTorch tutorial program in Matrix Backprop (2019-05-15)).
* :func:`digits`: scikit-learn's bundled 8x8 digits (needs the
  ``[experiments]`` extra), stratified split, standardised on the training set.
"""
from __future__ import annotations

import numpy as np

_HIGHAM_X1 = (0.1, 0.3, 0.1, 0.6, 0.4, 0.6, 0.5, 0.9, 0.4, 0.7)
_HIGHAM_X2 = (0.1, 0.4, 0.5, 0.9, 0.2, 0.3, 0.6, 0.2, 0.4, 0.6)


def higham_points(eleven: bool = False, dtype=np.float32):
    """``(x, y)``: x (10 or 11, 2) in the unit square, y one-hot (A = [1, 0], B = [0, 1])."""
    x = np.stack([_HIGHAM_X1, _HIGHAM_X2], axis=1)
    y = np.zeros((10, 2))
    y[:5, 0] = 1  # class A: the first five points
    y[5:, 1] = 1  # class B
    if eleven:
        x = np.concatenate([x, [[0.3, 0.7]]])
        y = np.concatenate([y, [[0.0, 1.0]]])
    return x.astype(dtype), y.astype(dtype)


def spiral(n_per_class: int = 100, n_classes: int = 3, seed: int = 0, dtype=np.float32):
    """cs231n's spiral: radius linspace(0, 1), angle linspace(4j, 4(j+1)) + 0.2 N(0, 1)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for j in range(n_classes):
        r = np.linspace(0.0, 1.0, n_per_class)
        t = np.linspace(j * 4, (j + 1) * 4, n_per_class) + rng.standard_normal(n_per_class) * 0.2
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n_per_class, j))
    return np.concatenate(xs).astype(dtype), np.concatenate(ys).astype(np.int32)


def random_regression(n=64, d_in=1000, d_out=10, seed=0, dtype=np.float32):
    """the PyTorch tutorial program in Matrix Backprop (2019-05-15): x (N, D_in) and y (N, D_out), both standard normal."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d_in)).astype(dtype), rng.standard_normal((n, d_out)).astype(dtype)


def digits(test_size: float = 0.25, seed: int = 0, dtype=np.float32):
    """scikit-learn's bundled digits (1797 x 64): ``(x_train, y_train, x_test, y_test)``."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover
        raise ImportError("digits needs scikit-learn: pip install 'jaxmlp[experiments]'") from e
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    sd[sd == 0] = 1.0  # constant pixels (always 0) stay 0
    f = lambda a: ((a - mu) / sd).astype(dtype)  # noqa: E731
    return f(x_tr), y_tr.astype(np.int32), f(x_te), y_te.astype(np.int32)
