"""A 2-D picture of customers in the segmentation's feature space (the dashboard's map)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def principal_plane(X: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Project rows onto their first two principal components.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Customers' features as the clusters see them (scaled and weighted).

    Returns
    -------
    xy : ndarray of shape (n, 2)
        Coordinates on the plane of largest variance; a component that does not exist
        (n < 2 or d < 2) is zero. Each axis is oriented so that its largest loading is
        positive, so the same data always gives the same picture.
    explained : ndarray of shape (2,)
        Share of the total variance along each axis (0 when there is none).
    """
    n, d = X.shape
    xy = np.zeros((n, 2))
    explained = np.zeros(2)
    if n < 2 or d == 0:
        return xy, explained
    centred = X - X.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    total = float(np.sum(singular**2))
    for axis in range(min(2, vt.shape[0])):
        component = vt[axis]
        if component[np.argmax(np.abs(component))] < 0:
            component = -component
        xy[:, axis] = centred @ component
        explained[axis] = singular[axis] ** 2 / total if total > 0 else 0.0
    return xy, explained
