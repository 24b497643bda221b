"""The search of :mod:`.search` in batched torch ops, for GPUs (and any torch device).

Used when a retriever/scorer is given ``device="cuda"`` (or ``backend="torch"``). Same three stages, same candidate
rule (top ``n`` by score, ties by lower doc id: :func:`.ranking.select_top`), same exact scores up to float rounding,
so the rankings equal the numba CPU path's. Differences are in how the work is laid out:

- A whole batch of queries runs at once: queries are mapped into the codec's query space and zero-padded to
  ``(B, T, dim)`` by :func:`.search.pad_queries`, as for the numba kernels (a zero query vector adds 0 to MaxSim),
  with a mask of real tokens; ``St = centroids @ Q.T`` is one product, ``(B, K, T)``.
- Stage 1 walks the postings of every (query, token, probe) at once: the postings are flattened into one list
  (segment ops, no per-query ``unique``); per token, ``scatter_reduce(amax)`` into a dense ``(B, n_docs)`` buffer
  keeps each document's best probed gain, added into the running sum token by token (the numba path's order).
- Candidate cuts are one ``topk`` per stage over an int64 key ``(score bits, -doc id)``: score desc, id asc
  (:func:`.ranking.top_by_key`, the tensor form of the numpy paths' rule).
- Stage 2 and the exact stage gather the candidates' vectors into one flat list for the batch;
  ``index_reduce(amax)`` takes each document's max per query token. The exact stage decodes residuals through the
  codec's byte table ``codec.lut`` ``(n_bytes, 256, per)`` (so any codec with a ``lut`` works unchanged) and scores
  all queries with one batched matrix product.
- Host syncs: one per stage per batch (to size the flat lists), none per query; exhaustive search has none until
  the results come back. Intermediate tensors are bounded by :func:`work_budget` (queries are split into groups).
- Codecs with a scale byte per vector (``codec.scale_lut`` not empty) multiply each decoded vector by
  ``scale_lut[scale byte]``, as the numba kernels do.
- Deleted documents (``reader.deleted``, a bool ``(n_docs,)`` array, when present) are never candidates: stage 1
  and exhaustive search give them ``-inf``.

The index arrays are copied to the device once per (index reader, device) and kept (:meth:`TorchIndex.get`).
"""
from __future__ import annotations

import threading
import warnings
from typing import Optional

import numpy as np
import torch

from .chunks import budget_groups, doc_chunks
from .layout import IndexReader
from .ranking import ID_MAX
from .ranking import top_by_key as _top_by_key  # (the name tests/test_search_torch.py pins)
from .search import SearchParams, pad_queries

warnings.filterwarnings("ignore", message=r"index_reduce\(\) is in beta")  # used as documented; stable since 1.13

_CACHE: dict[tuple[str, str], "TorchIndex"] = {}
_LOCK = threading.Lock()
_NEG_INF = float("-inf")

# Elements (float32) an intermediate tensor may hold: queries are split into groups to stay below it.
WORK_BUDGET = {"cuda": 2 ** 27, "cpu": 2 ** 25}


def work_budget(device: torch.device) -> int:
    """Largest intermediate tensor (float32 elements) one step builds on ``device`` (512 MB on a GPU, 128 MB
    elsewhere)."""
    return WORK_BUDGET.get(device.type, WORK_BUDGET["cpu"])


class TorchIndex:
    """Device copies of an index's arrays (codes as int64, residual bytes, the codec's decoding table)."""

    def __init__(self, reader: IndexReader, device: torch.device):
        self.reader = reader
        self.device = device
        codec = reader.codec
        self.codec = codec

        def t(a: np.ndarray, dt: Optional[torch.dtype] = None) -> torch.Tensor:
            return torch.as_tensor(np.array(a), device=device, dtype=dt)  # copies (memory maps are read-only)

        self.centroids = t(codec.centroids, torch.float32)
        self.offsets_np = np.asarray(reader.offsets, dtype=np.int64)
        self.offsets = t(self.offsets_np, torch.int64)
        self.doclens = self.offsets[1:] - self.offsets[:-1]
        self.codes = t(np.asarray(reader.codes).astype(np.int64), torch.int64)
        self.nbits = codec.nbits
        if codec.nbits == 16:
            self.residuals = t(reader.residuals, torch.float16)
            self.lut = None
        else:
            self.residuals = t(reader.residuals, torch.uint8)
            lut = np.asarray(codec.lut, dtype=np.float32)  # (n_bytes, 256, per)
            self.n_bytes = lut.shape[0]
            self.lut = t(lut.reshape(-1, lut.shape[2]))  # (n_bytes * 256, per)
            self.lut_base = torch.arange(lut.shape[0], device=device, dtype=torch.int64) * 256
            # codecs with a scale byte per vector (after the residual bytes): the vector is multiplied by
            # scale_lut[that byte] (the inverse norm of its reconstruction)
            scale = np.asarray(getattr(codec, "scale_lut", np.zeros(0)), dtype=np.float32)
            self.scale = t(scale) if len(scale) else None
        self.ivf_offsets = t(reader.ivf_offsets, torch.int64)
        self.ivf_docs = t(np.asarray(reader.ivf_docs).astype(np.int64), torch.int64)
        self.n_docs = reader.n_docs
        self.dim = reader.dim
        self._deleted_src: object = None
        self.deleted: Optional[torch.Tensor] = None  # bool (n_docs,) on the device, or None

    @classmethod
    def get(cls, reader: IndexReader, device: str | torch.device) -> "TorchIndex":
        """The device copy of ``reader``'s arrays, made on first use and kept while ``reader`` is the same object;
        the deletion mask is refreshed whenever ``reader.deleted`` is another object."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = (str(reader.path), str(device))
        with _LOCK:
            ti = _CACHE.get(key)
            if ti is None or ti.reader is not reader:
                ti = _CACHE[key] = cls(reader, device)
            ti._refresh_deleted()
            return ti

    def _refresh_deleted(self) -> None:
        src = getattr(self.reader, "deleted", None)
        if src is self._deleted_src:
            return
        self._deleted_src = src
        if src is None:
            self.deleted = None
            return
        mask = np.asarray(src, dtype=bool)
        if mask.shape != (self.n_docs,):
            raise ValueError(f"reader.deleted must be a bool array of shape ({self.n_docs},), not {mask.shape}")
        self.deleted = torch.as_tensor(np.array(mask), device=self.device) if mask.any() else None

    # ---------------------------------------------------------------------------------------------- queries
    def pad_queries(self, queries: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``(Q (B, T, dim) float32 on the device; mask (B, T) bool of real tokens; lengths)``: the batch as
        :func:`.search.pad_queries` maps (``codec.query_space``) and pads it, every query to ``T`` rows."""
        lens = [len(q) for q in queries]
        T = max(max(lens, default=0), 1)
        Q, _, _ = pad_queries(queries, self.codec, rows=T)
        Qt = torch.from_numpy(Q.reshape(len(queries), T, self.dim))
        if self.device.type == "cuda":
            Qt = Qt.pin_memory().to(self.device, non_blocking=True)
        mask = torch.arange(T).unsqueeze(0) < torch.tensor(lens, dtype=torch.int64).unsqueeze(1)
        return Qt, mask.to(self.device), lens

    def centroid_scores(self, Q: torch.Tensor) -> torch.Tensor:
        """``St[b] = centroids @ Q[b].T``: float32 ``(B, K, T)`` (rows per centroid, as the numba kernels read)."""
        B, T, _ = Q.shape
        St = self.centroids @ Q.reshape(B * T, -1).T  # (K, B*T): one product for the batch
        return St.reshape(-1, B, T).permute(1, 0, 2).contiguous()

    # ---------------------------------------------------------------------------------------------- vectors
    def decode(self, rows: torch.Tensor) -> torch.Tensor:
        """Float32 vectors ``(n, dim)`` of stored rows ``rows`` (int64 ``(n,)``), in the codec's query space:
        ``centroid[code] + lut[byte position, byte value]`` per residual byte (``+ float16 residual`` at nbits=16)."""
        return self._decode(self.codes.index_select(0, rows), self.residuals.index_select(0, rows))

    def decode_range(self, v0: int, v1: int) -> torch.Tensor:
        """:meth:`decode` of the stored rows ``v0:v1`` (no gather of codes and residual bytes)."""
        return self._decode(self.codes[v0:v1], self.residuals[v0:v1])

    def _decode(self, codes: torch.Tensor, res: torch.Tensor) -> torch.Tensor:
        cent = self.centroids.index_select(0, codes)  # row gathers: contiguous copies on every device
        if self.lut is None:
            return cent + res.float()
        idx = (res[:, :self.n_bytes].long() + self.lut_base).reshape(-1)  # (n * n_bytes,) rows of the byte table
        vecs = cent.add_(self.lut.index_select(0, idx).view(len(codes), self.dim))
        if self.scale is not None:
            vecs.mul_(self.scale.index_select(0, res[:, self.n_bytes].long()).unsqueeze(1))
        return vecs

    def _flat_rows(self, docs: torch.Tensor, lens: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored rows of the documents ``docs`` (flat ``(m,)``) with ``lens`` vectors each (0 to skip one),
        concatenated: ``(rows (total,) int64, owner (total,) int64 position in docs)``. No host sync."""
        m = len(docs)
        owner = torch.repeat_interleave(torch.arange(m, device=self.device), lens, output_size=total)
        first = torch.cumsum(lens, 0) - lens  # flat position of each document's first vector
        shift = (self.offsets.index_select(0, docs) - first).index_select(0, owner)
        rows = torch.arange(total, device=self.device) + shift
        return rows, owner

    # ---------------------------------------------------------------------------------------------- stages
    def probe(self, St: torch.Tensor, mask: torch.Tensor, nprobe: int, ncandidates: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1 for a batch: ``(candidates (B, n) int64, valid (B, n) bool)``, the ``ncandidates`` best
        documents of each query by approximate score (ties: lower id), among documents a probe touched.

        Per token: probe the ``nprobe`` best centroids; a document's token score is its best probed centroid's
        score minus the token's best unprobed one (the imputation of a miss), summed over tokens. Queries are
        taken in groups whose ``(queries, n_docs)`` accumulators fit :func:`work_budget`."""
        step = max(work_budget(self.device) // max(self.n_docs, 1), 1)
        if len(St) <= step:
            return self._probe(St, mask, nprobe, ncandidates)
        parts = [self._probe(St[b:b + step], mask[b:b + step], nprobe, ncandidates) for b in range(0, len(St), step)]
        return torch.cat([c for c, _ in parts]), torch.cat([v for _, v in parts])

    def _probe(self, St: torch.Tensor, mask: torch.Tensor, nprobe: int, ncandidates: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        B, K, T = St.shape
        dev = self.device
        w = min(nprobe + 1, K)
        npr = min(nprobe, w)
        vals, cents = torch.topk(St.transpose(1, 2), w, dim=2)  # (B, T, w), best first
        gain = vals[:, :, :npr] - vals[:, :, w - 1:w]  # >= 0; the last probe's is 0 when K <= nprobe
        cents = cents[:, :, :npr]
        # postings of every (token, query, probe), token-major so each token's postings are one slice
        c = cents.permute(1, 0, 2).reshape(-1)  # (T * B * npr,)
        g = gain.permute(1, 0, 2).reshape(-1)
        q = torch.arange(B, device=dev).view(1, B, 1).expand(T, B, npr).reshape(-1)
        real = mask.T.unsqueeze(2).expand(T, B, npr).reshape(-1)
        lens = torch.where(real, self.ivf_offsets[c + 1] - self.ivf_offsets[c], 0)
        per_tok = lens.view(T, -1).sum(1).tolist()  # the stage's one host sync
        total = int(sum(per_tok))
        owner = torch.repeat_interleave(torch.arange(len(c), device=dev), lens, output_size=total)
        first = torch.cumsum(lens, 0) - lens
        docs = self.ivf_docs.index_select(
            0, torch.arange(total, device=dev) + (self.ivf_offsets.index_select(0, c) - first).index_select(0, owner))
        target = q.index_select(0, owner) * self.n_docs + docs  # flat (query, doc) slot
        src = g.index_select(0, owner)
        acc = torch.zeros(B * self.n_docs, device=dev)
        best = torch.empty(B * self.n_docs, device=dev)
        e = 0
        for n_t in per_tok:  # tokens in order: the same float sums as the numba path (a miss adds 0)
            if n_t == 0:
                continue
            best.zero_()  # gains are >= 0
            best.scatter_reduce_(0, target[e:e + n_t], src[e:e + n_t], "amax")
            acc += best
            e += n_t
        acc = acc.view(B, self.n_docs)
        touched = torch.zeros(B * self.n_docs, dtype=torch.bool, device=dev).index_fill_(0, target, True)
        touched = touched.view(B, self.n_docs)
        if self.deleted is not None:
            touched &= ~self.deleted
        acc = acc.masked_fill(~touched, _NEG_INF)
        ids = torch.arange(self.n_docs, device=dev).expand(B, -1)
        pos = _top_by_key(acc, ids, ncandidates)
        return pos, torch.gather(touched, 1, pos)

    def _maxsim_groups(self, cands: torch.Tensor, valid: torch.Tensor, T: int) -> list[tuple[int, int, int, list]]:
        """Split the batch into query groups ``(b0, b1, n_vectors, vectors of each query)`` whose candidates'
        vectors times ``max(T, dim)`` fit :func:`work_budget`. One host sync."""
        lens = torch.where(valid, self.doclens[cands], 0)
        per_q = lens.sum(1).tolist()
        budget = max(work_budget(self.device) // max(T, self.dim), 1)
        return [(b0, b1, sum(per_q[b0:b1]), per_q[b0:b1]) for b0, b1 in budget_groups(per_q, budget)]

    def _group_rows(self, cands: torch.Tensor, valid: torch.Tensor, b0: int, b1: int,
                    total: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The candidates of queries ``b0:b1`` flattened (``docs``), and the stored-vector rows of the valid ones
        (``total`` of them) with the position in ``docs`` each row belongs to (``owner``)."""
        docs = cands[b0:b1].reshape(-1)
        lens = torch.where(valid[b0:b1].reshape(-1), self.doclens[docs], 0)
        rows, owner = self._flat_rows(docs, lens, total)
        return docs, rows, owner

    def centroid_interaction(self, St: torch.Tensor, cands: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Stage 2: ``sum_t max_j St[b, code_j, t]`` over all vectors ``j`` of each candidate; float32 ``(B, n)``,
        ``-inf`` where not valid (or empty)."""
        B, n = cands.shape
        T = St.shape[2]
        out = torch.full((B, n), _NEG_INF, device=self.device)
        for b0, b1, total, _ in self._maxsim_groups(cands, valid, T):
            if total == 0:
                continue
            docs, rows, owner = self._group_rows(cands, valid, b0, b1, total)
            K = St.shape[1]
            St_rows = St.view(B * K, T)
            sims = St_rows.index_select(0, (b0 + owner // n) * K + self.codes.index_select(0, rows))  # (total, T)
            best = torch.full((len(docs), T), _NEG_INF, device=self.device)
            best.index_reduce_(0, owner, sims, "amax")
            out[b0:b1] = best.sum(1).view(b1 - b0, n)
        return out

    def exact(self, Q: torch.Tensor, cands: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Exact MaxSim of each padded query ``Q[b]`` ``(T, dim)`` against the stored vectors of ``cands[b]``;
        float32 ``(B, n)``, ``-inf`` for empty or invalid entries. The candidates' vectors of a group of queries are
        decoded together; each query's (a contiguous slice) go through one matrix product with its tokens."""
        B, n = cands.shape
        T = Q.shape[1]
        out = torch.full((B, n), _NEG_INF, device=self.device)
        for b0, b1, total, per_q in self._maxsim_groups(cands, valid, T):
            if total == 0:
                continue
            nb = b1 - b0
            docs, rows, owner = self._group_rows(cands, valid, b0, b1, total)
            vecs = self.decode(rows)  # (total, dim), query by query
            sims = torch.empty(total, T, device=self.device)
            s = 0
            for b, m in zip(range(b0, b1), per_q):  # no sync: the sizes came with the groups
                if m:
                    torch.mm(vecs[s:s + m], Q[b].T, out=sims[s:s + m])
                s += m
            best = torch.full((len(docs), T), _NEG_INF, device=self.device)
            best.index_reduce_(0, owner, sims, "amax")
            out[b0:b1] = best.sum(1).view(nb, n)
        return out


def _results(ids: torch.Tensor, scores: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row of ``(B, k)`` best-first ids/scores, the entries above ``-inf``, on the host."""
    ids_h = ids.cpu().numpy().astype(np.int64)
    sc_h = scores.cpu().numpy().astype(np.float32)
    out = []
    for i, s in zip(ids_h, sc_h):
        keep = s > _NEG_INF
        out.append((np.ascontiguousarray(i[keep]), np.ascontiguousarray(s[keep])))
    return out


def _empty(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)) for _ in range(n)]


def search_plaid_torch(reader: IndexReader, queries: list[np.ndarray], k: int, params: SearchParams = SearchParams(),
                       device: str | torch.device = "cuda") -> list[tuple[np.ndarray, np.ndarray]]:
    """Torch version of :func:`.search.search_plaid` over the whole batch at once; same output (numpy, host):
    per query ``(doc_ids int64, scores float32)``, best first, ties by lower id."""
    if len(queries) == 0:
        return []
    ti = TorchIndex.get(reader, device)
    if ti.n_docs == 0 or len(ti.centroids) == 0:
        return _empty(len(queries))
    p = params.for_k(k, reader.n_live)
    with torch.inference_mode():
        Q, mask, _ = ti.pad_queries(queries)
        St = ti.centroid_scores(Q)
        cands, valid = ti.probe(St, mask, p.nprobe, p.ncandidates)
        if cands.shape[1] > p.nexact:
            ci = ti.centroid_interaction(St, cands, valid)
            pos = _top_by_key(ci.masked_fill(~valid, _NEG_INF), cands, p.nexact)
            cands, valid = torch.gather(cands, 1, pos), torch.gather(valid, 1, pos)
        sc = ti.exact(Q, cands, valid).masked_fill(~valid, _NEG_INF)
        pos = _top_by_key(sc, cands, k)
        return _results(torch.gather(cands, 1, pos), torch.gather(sc, 1, pos))


def exact_torch(reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray,
                device: str | torch.device = "cuda") -> np.ndarray:
    """Torch version of :func:`.search.exact_maxsim`: float32 ``(len(doc_ids),)``, ``-inf`` for empty documents."""
    ti = TorchIndex.get(reader, device)
    ids = np.asarray(doc_ids, dtype=np.int64)
    if len(ids) == 0:
        return np.zeros(0, dtype=np.float32)
    with torch.inference_mode():
        Q, _, _ = ti.pad_queries([np.asarray(query, dtype=np.float32).reshape(-1, ti.dim)])
        cands = torch.as_tensor(ids, device=ti.device).unsqueeze(0)
        valid = torch.ones_like(cands, dtype=torch.bool)
        return ti.exact(Q, cands, valid)[0].cpu().numpy()


def search_exhaustive_torch(reader: IndexReader, queries: list[np.ndarray], k: int,
                            device: str | torch.device = "cuda", chunk_vectors: Optional[int] = None
                            ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Torch version of :func:`.search.search_exhaustive`: every document's vectors, decoded chunk by chunk, go
    through one matrix product with all queries' tokens; each document's max per token (``index_reduce``) summed
    over the query's real tokens; a running top-``k`` per query. ``chunk_vectors``: vectors per chunk (default:
    what :func:`work_budget` allows for the batch). No host sync until the results come back. A query with no
    vectors gets no results."""
    n_q = len(queries)
    if n_q == 0:
        return []
    ti = TorchIndex.get(reader, device)
    if ti.n_docs == 0:
        return _empty(n_q)
    k = min(k, ti.n_docs)
    dev = ti.device
    with torch.inference_mode():
        Q, mask, _ = ti.pad_queries(queries)
        B, T, _ = Q.shape
        Qf = Q.reshape(B * T, ti.dim)
        tok_mask = mask.unsqueeze(2)  # (B, T, 1)
        if chunk_vectors is None:
            chunk_vectors = max(work_budget(dev) // (B * T + ti.dim), 1)
        best_s = torch.full((B, k), _NEG_INF, device=dev)
        best_i = torch.full((B, k), ID_MAX, dtype=torch.int64, device=dev)  # worst key among equal scores
        offsets = ti.offsets_np
        for d0, d1 in doc_chunks(offsets, chunk_vectors):
            v0, v1 = int(offsets[d0]), int(offsets[d1])
            nd = d1 - d0
            ids = torch.arange(d0, d1, device=dev)
            scores = torch.full((B, nd), _NEG_INF, device=dev)
            if v1 > v0:
                owner = torch.repeat_interleave(torch.arange(nd, device=dev), ti.doclens[d0:d1],
                                                output_size=v1 - v0)
                sims = Qf @ ti.decode_range(v0, v1).T  # (B*T, n_vec)
                per_tok = torch.full((B * T, nd), _NEG_INF, device=dev)
                per_tok.index_reduce_(1, owner, sims, "amax")
                nonempty = ti.doclens[d0:d1] > 0
                per_tok = per_tok.view(B, T, nd).masked_fill(~tok_mask, 0.0).sum(1)  # padded tokens add 0
                scores = torch.where(nonempty, per_tok, scores)
            if ti.deleted is not None:
                scores = scores.masked_fill(ti.deleted[d0:d1], _NEG_INF)
            all_s = torch.cat([best_s, scores], 1)
            all_i = torch.cat([best_i, ids.expand(B, -1)], 1)
            pos = _top_by_key(all_s, all_i, k)
            best_s, best_i = torch.gather(all_s, 1, pos), torch.gather(all_i, 1, pos)
        res = _results(best_i, best_s)
    # a query without vectors retrieves nothing (as in search_plaid_torch), not every document at score 0
    return [r if len(q) else _empty(1)[0] for r, q in zip(res, queries)]
