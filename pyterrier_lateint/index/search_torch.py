"""The same three-stage search and exact re-scoring as :mod:`.search`, in torch ops, for GPUs.

Used when a retriever/scorer is given ``device="cuda"`` (or any torch device). The index arrays are copied to the
device once per (index, device) and kept; results match the numba CPU path (same stages, same exact scores).
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from .layout import IndexReader
from .search import SearchParams, select_top

_CACHE: dict[tuple[str, str], "TorchIndex"] = {}
_LOCK = threading.Lock()


class TorchIndex:
    """Device copies of an index's arrays."""

    def __init__(self, reader: IndexReader, device: torch.device):
        self.reader = reader
        self.device = device
        codec = reader.codec
        t = lambda a, dt=None: torch.as_tensor(np.array(a), device=device, dtype=dt)  # noqa: E731  (copies)
        self.centroids = t(codec.centroids)
        self.offsets = t(reader.offsets, torch.int64)
        self.codes = t(reader.codes.astype(np.int64) if reader.codes.dtype == np.uint16 else reader.codes,
                       torch.int64)
        self.nbits = codec.nbits
        if codec.nbits == 16:
            self.residuals = t(reader.residuals)  # float16
            self.weights = None
        else:
            self.residuals = t(reader.residuals, torch.uint8)
            self.weights = t(codec.weights)  # (dim, 2**nbits)
        self.ivf_offsets = t(reader.ivf_offsets, torch.int64)
        self.ivf_docs = t(reader.ivf_docs.astype(np.int64), torch.int64)
        self.n_docs = reader.n_docs
        self.dim = reader.dim

    @classmethod
    def get(cls, reader: IndexReader, device: str | torch.device) -> "TorchIndex":
        device = torch.device(device)
        key = (str(reader.path), str(device))
        with _LOCK:
            if key not in _CACHE or _CACHE[key].reader is not reader:
                _CACHE[key] = cls(reader, device)
            return _CACHE[key]

    def decompress_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Float32 vectors of stored rows ``rows`` (int64, any shape) -> ``rows.shape + (dim,)``."""
        flat = rows.reshape(-1)
        cent = self.centroids[self.codes[flat]]
        if self.nbits == 16:
            out = cent + self.residuals[flat].float()
        else:
            per = 8 // self.nbits
            packed = self.residuals[flat].long()  # (n, nbytes)
            shifts = torch.arange(per, device=self.device) * self.nbits
            buckets = ((packed.unsqueeze(-1) >> shifts) & ((1 << self.nbits) - 1)).reshape(len(flat), self.dim)
            dims = torch.arange(self.dim, device=self.device)
            out = cent + self.weights[dims, buckets]
        return out.reshape(*rows.shape, self.dim)

    def padded_rows(self, doc_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows (n, L) int64, mask (n, L) bool)``: the stored rows of each document, padded to the longest."""
        starts = self.offsets[doc_ids]
        lens = self.offsets[doc_ids + 1] - starts
        L = int(lens.max()) if len(lens) else 0
        ar = torch.arange(max(L, 1), device=self.device)
        mask = ar.unsqueeze(0) < lens.unsqueeze(1)
        rows = torch.where(mask, starts.unsqueeze(1) + ar, torch.zeros_like(ar))
        if len(self.codes) == 0:
            rows = torch.zeros_like(rows)
        return rows, mask

    def exact(self, q: torch.Tensor, doc_ids: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Exact MaxSim of ``q`` (nq, dim) against ``doc_ids``; ``-inf`` for empty docs; float32 (n,)."""
        out = torch.full((len(doc_ids),), float("-inf"), device=self.device)
        for s in range(0, len(doc_ids), chunk):
            ids = doc_ids[s:s + chunk]
            rows, mask = self.padded_rows(ids)
            vecs = self.decompress_rows(rows)  # (n, L, dim)
            sims = torch.einsum("qd,nld->nql", q, vecs).masked_fill(~mask.unsqueeze(1), float("-inf"))
            best = sims.max(dim=2).values  # (n, nq)
            sc = best.sum(dim=1) if q.shape[0] else torch.zeros(len(ids), device=self.device)
            out[s:s + chunk] = torch.where(mask.any(dim=1), sc, torch.full_like(sc, float("-inf")))
        return out


def search_plaid_torch(reader: IndexReader, queries: list[np.ndarray], k: int, params: SearchParams = SearchParams(),
                       device: str | torch.device = "cuda") -> list[tuple[np.ndarray, np.ndarray]]:
    """Torch version of :func:`.search.search_plaid`; same output (numpy, on the host)."""
    ti = TorchIndex.get(reader, device)
    p = params.for_k(k)
    K = len(ti.centroids)
    nprobe = min(p.nprobe, K)
    results = []
    for qv in queries:
        q = torch.as_tensor(np.asarray(qv, dtype=np.float32), device=ti.device)
        if len(q) == 0:
            results.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)))
            continue
        S = q @ ti.centroids.T  # (nq, K)
        top_s, top_c = torch.topk(S, min(nprobe + 1, K), dim=1)  # best first, then the imputed (best unprobed)
        gain = top_s[:, :nprobe] - top_s[:, -1:]
        top_c = top_c[:, :nprobe]
        # stage 1: postings of the probed centroids; per (token, doc) the best gain, then summed per doc
        starts = ti.ivf_offsets[top_c].reshape(-1)
        lens = (ti.ivf_offsets[top_c + 1] - ti.ivf_offsets[top_c]).reshape(-1)
        total = int(lens.sum())
        if total == 0:
            results.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)))
            continue
        seg = torch.repeat_interleave(torch.arange(len(lens), device=ti.device), lens)
        within = torch.arange(total, device=ti.device) - torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
        docs = ti.ivf_docs[starts[seg] + within]
        tok = seg // nprobe
        g = gain.reshape(-1)[seg]
        key = tok * ti.n_docs + docs
        ukey, inv = torch.unique(key, return_inverse=True)
        best = torch.full((len(ukey),), float("-inf"), device=ti.device).scatter_reduce(0, inv, g, "amax")
        udoc, dinv = torch.unique(ukey % ti.n_docs, return_inverse=True)
        approx = torch.zeros(len(udoc), device=ti.device).index_add_(0, dinv, best)
        cands = torch.as_tensor(select_top(udoc.cpu().numpy(), approx.cpu().numpy(), p.ncandidates), device=ti.device)
        # stage 2: centroid interaction over all codes of each candidate
        if len(cands) > p.nexact:
            rows, mask = ti.padded_rows(cands)
            cs = S[:, ti.codes[rows]].masked_fill(~mask.unsqueeze(0), float("-inf"))  # (nq, n, L)
            ci = cs.max(dim=2).values.sum(dim=0)
            cands = torch.as_tensor(select_top(cands.cpu().numpy(), ci.cpu().numpy(), p.nexact), device=ti.device)
        # stage 3: exact
        sc = ti.exact(q, cands)
        keep = torch.isfinite(sc)
        cands, sc = cands[keep], sc[keep]
        order = torch.argsort(cands)  # ties broken by doc id, like the CPU path
        cands, sc = cands[order], sc[order]
        top = torch.topk(sc, min(k, len(sc)))
        ids, scores = cands[top.indices].cpu().numpy(), top.values.cpu().numpy()
        o = np.lexsort((ids, -scores))
        results.append((ids[o].astype(np.int64), scores[o].astype(np.float32)))
    return results


def exact_torch(reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray,
                device: str | torch.device = "cuda") -> np.ndarray:
    """Torch version of :func:`.search.exact_maxsim`."""
    ti = TorchIndex.get(reader, device)
    q = torch.as_tensor(np.asarray(query, dtype=np.float32), device=ti.device)
    ids = torch.as_tensor(np.asarray(doc_ids, dtype=np.int64), device=ti.device)
    return ti.exact(q, ids).cpu().numpy()


def search_exhaustive_torch(reader: IndexReader, queries: list[np.ndarray], k: int,
                            device: str | torch.device = "cuda", chunk_docs: int = 4096
                            ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Torch version of :func:`.search.search_exhaustive`."""
    from .search import _topk
    ti = TorchIndex.get(reader, device)
    results = []
    for qv in queries:
        q = torch.as_tensor(np.asarray(qv, dtype=np.float32), device=ti.device)
        ids_all, sc_all = [], []
        for s in range(0, ti.n_docs, chunk_docs):
            ids = torch.arange(s, min(s + chunk_docs, ti.n_docs), device=ti.device)
            sc = ti.exact(q, ids)
            top = torch.topk(sc, min(k, len(sc)))
            ids_all.append(ids[top.indices].cpu().numpy())
            sc_all.append(top.values.cpu().numpy())
        results.append(_topk(np.concatenate(ids_all).astype(np.int64), np.concatenate(sc_all), k))
    return results

