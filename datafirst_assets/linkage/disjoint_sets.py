"""Union-find: the one implementation every clusterer here builds on (connected components of
stored pairs, the threshold sweep, cross-justice-system agglomeration, the date-of-birth guard).

    sets = DisjointSets(n)
    sets.union(a, b)            # joins under the smaller root
    ra, rb = sets.find(a), sets.find(b)
    if ra != rb and allowed(ra, rb): sets.join(ra, rb)   # a constrained join
    sets.roots()                # every element's root, as a numpy array
"""

from __future__ import annotations

import numpy as np


class DisjointSets:
    """Disjoint sets over 0..n-1 with path compression; a joined set's root is its smallest root."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def join(self, root_a: int, root_b: int) -> int:
        """Join two different roots' sets; returns the root kept (the smaller)."""
        keep, gone = (root_a, root_b) if root_a < root_b else (root_b, root_a)
        self.parent[gone] = keep
        return keep

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; False when they were one set already."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return False
        self.join(root_a, root_b)
        return True

    def roots(self) -> np.ndarray:
        """Every element's root, by pointer jumping (whole-array steps, no Python loop per element)."""
        roots = np.asarray(self.parent, dtype=np.int64)
        while True:
            jumped = roots[roots]
            if np.array_equal(jumped, roots):
                return roots
            roots = jumped


def component_minimum(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Each of 0..n-1's component root when every edge ``left[i]``-``right[i]`` is joined: its
    component's smallest element, as :meth:`DisjointSets.roots` gives (a joined set keeps its
    smallest root), in whole-array steps: each round hooks every root under the smallest root it
    has an edge to and jumps pointers until each element points at a root (rounds: about log n)."""
    label = np.arange(n, dtype=np.int64)
    a, b = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    while a.size:
        la, lb = label[a], label[b]
        differ = la != lb
        if not differ.any():
            break
        la, lb = la[differ], lb[differ]
        np.minimum.at(label, np.maximum(la, lb), np.minimum(la, lb))
        while True:
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        a, b = a[differ], b[differ]  # edges already inside one component stay so
    return label


def _dense(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for values in 0..n-1, by marking them in an array of
    n instead of sorting them: the same sorted values and positions. The highest threshold joins most
    of the scored pairs at once, and sorting their roots was the largest part of the sweep. Few values
    (the lower thresholds add few pairs each) are sorted still: marking costs a pass over all n."""
    if values.size * 16 < n:
        nodes, inverse = np.unique(values, return_inverse=True)
        return nodes, inverse.reshape(-1)
    present = np.zeros(n, dtype=bool)
    present[values] = True
    nodes = np.flatnonzero(present)
    position = np.zeros(n, dtype=np.int64)
    position[nodes] = np.arange(nodes.size, dtype=np.int64)
    return nodes, position[values]


def roots_at_thresholds(n: int, left: np.ndarray, right: np.ndarray, probability: np.ndarray,
                        thresholds) -> dict[float, np.ndarray]:
    """Each element's root (its component's smallest element) when the edges with ``probability``
    >= t are joined, for every t: the thresholds from the highest down, each joining only the
    edges it adds, between the roots so far (a threshold that adds none shares the array before it)."""
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    order = np.argsort(-np.asarray(probability, dtype=float), kind="stable")
    falling = -np.asarray(probability, dtype=float)[order]  # ascending
    label = np.arange(n, dtype=np.int64)
    # the identity between thresholds: each one changes only the roots it joins, then puts them back
    # (a new identity of n per threshold was a large part of the sweep's time at 1,000,000 people)
    mapping = np.arange(n, dtype=np.int64)
    roots: dict[float, np.ndarray] = {}
    position = 0
    for t in sorted(thresholds, reverse=True):
        end = int(np.searchsorted(falling, -t, side="right"))  # edges with probability >= t
        if end > position:
            take = order[position:end]
            a, b = label[left[take]], label[right[take]]
            apart = a != b
            if apart.any():
                nodes, inverse = _dense(np.concatenate([a[apart], b[apart]]), n)
                k = int(apart.sum())
                joined = component_minimum(len(nodes), inverse[:k], inverse[k:])
                mapping[nodes] = nodes[joined]
                label = mapping[label]
                mapping[nodes] = nodes
            position = end
        roots[t] = label
    return roots
