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
