"""The one union-find every clusterer builds on."""

import numpy as np

from datafirst_assets.linkage.disjoint_sets import DisjointSets


def test_unions_make_components_rooted_at_their_smallest_member():
    sets = DisjointSets(7)
    assert sets.union(5, 3) and sets.union(3, 6) and sets.union(1, 2)
    assert not sets.union(6, 5)  # already one set
    assert sets.roots().tolist() == [0, 1, 1, 3, 4, 3, 3]
    assert sets.find(6) == 3


def test_a_constrained_join_keeps_the_smaller_root_and_long_chains_resolve():
    sets = DisjointSets(1000)
    for i in range(999, 0, -1):  # a chain built from the top: deep before compression
        sets.join(sets.find(i - 1), sets.find(i))
    assert np.array_equal(sets.roots(), np.zeros(1000, dtype=np.int64))
    other = DisjointSets(5)
    assert other.join(4, 2) == 2 and other.roots().tolist() == [0, 1, 2, 3, 2]
