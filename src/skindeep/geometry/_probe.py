"""The linear probe behind held-out accuracies: one seeded stratified split, one classifier."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skindeep.geometry._checks import BoolArray, FloatArray

IntArray = np.ndarray


def stratified_split(y: BoolArray, test_size: float, seed: int) -> tuple[IntArray, IntArray]:
    """Seeded stratified train/test index split; raises if a class cannot appear on both sides."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    n = y.shape[0]
    n_test = int(np.ceil(test_size * n))
    n_classes = np.unique(y).size
    if n_test < n_classes or n - n_test < n_classes:
        raise ValueError(
            f"test_size={test_size} on {n} samples leaves too few for a stratified split "
            f"({n - n_test} train, {n_test} test, {n_classes} classes)"
        )
    idx = np.arange(n)
    train, test = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def fit_score(
    x_train: FloatArray, y_train: BoolArray, x_test: FloatArray, y_test: BoolArray
) -> float:
    """Fit a standardised L2 logistic regression on the train part and return test accuracy."""
    if x_train.ndim == 1:
        x_train = x_train[:, None]
        x_test = x_test[:, None]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(x_train, y_train)
    return float(clf.score(x_test, y_test))
