"""Two-level nearest-centroid assignment (index/coarse.py) against the exact assignment, and its use by builds."""
import numpy as np
import pytest

from pyterrier_lateint.index import ColBERTIndex, coarse
from pyterrier_lateint.index.kmeans import assign_nearest


def clustered(rng, n, dim=32, n_modes=40, spread=0.35):
    modes = rng.normal(size=(n_modes, dim))
    x = modes[rng.integers(0, n_modes, n)] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def sq_dist(x, c, a):
    return ((x - c[a]) ** 2).sum(1)


def test_probing_every_group_is_exact():
    rng = np.random.default_rng(0)
    c, x = clustered(rng, 256), clustered(rng, 3000)
    a = coarse.CoarseAssigner(c, probes=10 ** 6)
    assert a.probes == coarse.n_groups(256) == 16
    np.testing.assert_array_equal(a.assign(x), assign_nearest(x, c, bf16=False))


def test_default_probes_find_the_nearest_centroid_almost_always():
    rng = np.random.default_rng(1)
    c, x = clustered(rng, 1024), clustered(rng, 20000)
    got, exact = coarse.CoarseAssigner(c).assign(x), assign_nearest(x, c, bf16=False)
    assert got.dtype == np.int64 and got.shape == (20000,) and got.min() >= 0 and got.max() < 1024
    agree = np.mean(got == exact)
    assert 0.9 < agree < 1.0  # an approximation (8 of 32 groups probed), but a close one
    d_got, d_exact = sq_dist(x, c, got), sq_dist(x, c, exact)
    assert (d_got >= d_exact - 1e-5).all()  # never closer than the nearest
    assert d_got.sum() <= 1.02 * d_exact.sum()  # total squared residual within 2%
    assert np.array_equal(coarse.CoarseAssigner(c).assign(x), got)  # deterministic


def test_groups_partition_the_centroids():
    rng = np.random.default_rng(2)
    c = clustered(rng, 500)
    a = coarse.CoarseAssigner(c)
    members = np.concatenate([m.numpy() for m in a.members])
    np.testing.assert_array_equal(np.sort(members), np.arange(500))
    assert coarse.n_groups(500) == 16 and coarse.n_groups(65536) == 256 and coarse.n_groups(1) == 1


def test_builds_and_kmeans_switch_to_it_from_the_threshold(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    docs = [{"docno": f"d{i}", "doc_embs": clustered(rng, int(rng.integers(5, 30)))} for i in range(300)]
    exact = ColBERTIndex(tmp_path / "exact").indexer(n_centroids=256, verbose=False).index(docs)
    assert exact.metadata()["build"]["assignment"] == "exact"
    monkeypatch.setattr(coarse, "COARSE_MIN_CENTROIDS", 128)
    two = ColBERTIndex(tmp_path / "coarse").indexer(codec_from=exact, verbose=False).index(docs)
    assert two.metadata()["build"]["assignment"] == "coarse: 16 groups, 8 probed"
    ra, rb = exact.reader(), two.reader()
    assert 0.9 < np.mean(np.asarray(ra.codes) == np.asarray(rb.codes)) < 1.0
    # k-means from the threshold up assigns by two levels too: about the same clustering quality
    x = clustered(rng, 6000)
    c_two = coarse.train_centroids(x, 256, iters=6, seed=0, use_faiss=False)
    monkeypatch.setattr(coarse, "COARSE_MIN_CENTROIDS", 10 ** 9)
    c_exact = coarse.train_centroids(x, 256, iters=6, seed=0, use_faiss=False)
    inertia = [sq_dist(x, c, assign_nearest(x, c, bf16=False)).sum() for c in (c_two, c_exact)]
    assert inertia[0] <= 1.03 * inertia[1]
    assert not np.array_equal(c_two, c_exact)  # (the switch did change the assignment)


@pytest.mark.parametrize("n", [0, 1, 7])
def test_small_inputs(n):
    rng = np.random.default_rng(4)
    c = clustered(rng, 64)
    x = clustered(rng, n) if n else np.zeros((0, 32), dtype=np.float32)
    np.testing.assert_array_equal(coarse.CoarseAssigner(c, probes=64).assign(x), assign_nearest(x, c, bf16=False))


def test_the_indexer_setting_chooses_the_assignment(tmp_path):
    rng = np.random.default_rng(5)
    docs = [{"docno": f"d{i}", "doc_embs": clustered(rng, int(rng.integers(5, 30)))} for i in range(300)]
    forced = ColBERTIndex(tmp_path / "c").indexer(n_centroids=256, assignment="coarse", verbose=False).index(docs)
    assert forced.metadata()["build"]["assignment"] == "coarse: 16 groups, 8 probed"
    exact = ColBERTIndex(tmp_path / "e").indexer(codec_from=forced, assignment="exact", verbose=False).index(docs)
    assert exact.metadata()["build"]["assignment"] == "exact"
    # the exact build's codes are the exact nearest centroids of the same (shared) codec
    c = forced.reader().codec.centroids
    x = np.concatenate([d["doc_embs"] for d in docs]).astype(np.float16).astype(np.float32)  # as the build spills it
    np.testing.assert_array_equal(np.asarray(exact.reader().codes), assign_nearest(x, c))
    with pytest.raises(ValueError, match="assignment must be one of"):
        ColBERTIndex(tmp_path / "x").indexer(assignment="approximate")


def test_groups_without_centroids_are_never_probed():
    # 40 copies of 4 distinct centroids: k-means of the centroids leaves most group means with no centroid
    rng = np.random.default_rng(6)
    c = np.repeat(clustered(rng, 4), 40, axis=0)
    a = coarse.CoarseAssigner(c, probes=3)
    assert all(len(m) for m in a.members) and len(a.members) <= 4 and a.probes <= len(a.members)
    x = clustered(rng, 500)
    got = a.assign(x)
    np.testing.assert_allclose(sq_dist(x, c, got), sq_dist(x, c, assign_nearest(x, c, bf16=False)), atol=1e-5)
