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


def _union_roots(n, left, right, probability, thresholds):
    """The threshold sweep one union at a time (what roots_at_thresholds replaces)."""
    sets, order, roots, position = DisjointSets(n), np.argsort(-probability, kind="stable"), {}, 0
    for t in sorted(thresholds, reverse=True):
        while position < len(order) and probability[order[position]] >= t:
            sets.union(int(left[order[position]]), int(right[order[position]]))
            position += 1
        roots[t] = sets.roots()
    return roots


def test_whole_array_components_are_the_union_finds():
    from datafirst_assets.linkage.disjoint_sets import component_minimum, roots_at_thresholds

    rng = np.random.default_rng(5)
    for n, m in ((1, 0), (30, 12), (500, 700), (3000, 2500)):
        left, right = rng.integers(0, n, m), rng.integers(0, n, m)
        # a long chain joined from its top end too: many rounds of hooking
        left, right = np.r_[left, np.arange(n - 1, 0, -1)[: n // 3]], np.r_[right, np.arange(n - 2, -1, -1)[: n // 3]]
        probability = rng.choice([0.2, 0.5, 0.5, 0.9, 0.99], len(left))  # ties, as match weights give
        thresholds = [0.1, 0.5, 0.7, 0.9, 0.95, 0.999]
        expected = _union_roots(n, left, right, probability, thresholds)
        got = roots_at_thresholds(n, left, right, probability, thresholds)
        assert list(got) == list(expected)
        assert all(np.array_equal(got[t], expected[t]) and got[t].dtype == np.int64 for t in thresholds)
        assert np.array_equal(component_minimum(n, left, right), expected[0.1])


def test_the_roots_a_threshold_joins_are_numbered_as_np_unique_numbers_them():
    # the sweep marks the roots a threshold joins in an array of n (many: the highest threshold joins
    # most scored pairs) or sorts them (few): either way the sorted values and positions of np.unique
    from datafirst_assets.linkage.disjoint_sets import _dense

    rng = np.random.default_rng(7)
    for n, size in ((1, 1), (10, 3), (1000, 10), (1000, 5000), (50_000, 40_000)):
        values = rng.integers(0, n, size)
        nodes, inverse = _dense(values, n)
        expected_nodes, expected_inverse = np.unique(values, return_inverse=True)
        assert np.array_equal(nodes, expected_nodes) and np.array_equal(inverse, expected_inverse.reshape(-1))
        assert np.array_equal(nodes[inverse], values)


def test_a_sweep_whose_highest_threshold_joins_most_pairs_gives_the_union_finds_roots():
    # the identity mapping is reused from one threshold to the next: each must put back what it changed
    from datafirst_assets.linkage.disjoint_sets import roots_at_thresholds

    rng = np.random.default_rng(9)
    n, m = 4000, 6000
    left, right = rng.integers(0, n, m), rng.integers(0, n, m)
    probability = np.where(rng.random(m) < 0.8, 0.999, rng.choice([0.3, 0.6, 0.8, 0.95], m))
    thresholds = [0.2, 0.5, 0.7, 0.9, 0.99, 0.9999]
    expected = _union_roots(n, left, right, probability, thresholds)
    got = roots_at_thresholds(n, left, right, probability, thresholds)
    assert all(np.array_equal(got[t], expected[t]) for t in thresholds)
