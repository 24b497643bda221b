"""Explicit-SIMD building blocks for the numba search kernels (numba ``@intrinsic``s emitting LLVM vector code).

Why: the hot loops add a table row of ``T`` floats (one per query token) into ``T`` running sums, once per stored
byte. Written as plain numba loops, LLVM either keeps the sums in memory (it cannot prove the sum buffer and the
table do not alias) or vectorises the wrong loop; both measured 3-7x slower than the vector code below, which keeps
the sums in SIMD registers (``<16 x float>``: one AVX-512 register, two AVX2 ones; LLVM legalises it for the host).

Contract shared by the intrinsics: every array is C-contiguous (float32 scores, integer codes, uint8 ``packed``);
``T`` (the last dimension of ``St`` and ``L``) is a multiple of :data:`LANES`; a document has at least one vector.
Loads are unaligned-safe; 64-byte aligned tables (:func:`aligned_empty`) avoid rows straddling two cache lines
(measured ~1.9x faster).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16  # float32 lanes per vector register group; query tokens are padded to a multiple of this
_I64 = ir.IntType(64)
_VEC = ir.VectorType(ir.FloatType(), LANES)
_HVEC = ir.VectorType(ir.HalfType(), LANES)  # a table row stored as float16 (``uint16`` arrays to numba)
_UNROLL = 4  # independent partial sums, to hide the latency of the vector adds


def aligned_empty(shape: tuple[int, ...], dtype=np.float32, align: int = 64) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data starts on an ``align``-byte boundary (a cache line by default)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = np.empty(n * dtype.itemsize + align, dtype=np.uint8)
    start = -buf.ctypes.data % align
    return buf[start:start + n * dtype.itemsize].view(dtype).reshape(shape)


def _c_array(t) -> bool:
    return isinstance(t, types.Array) and t.layout == "C"


def _vec_ptr(builder, base, index):
    return builder.bitcast(builder.gep(base, [index]), _VEC.as_pointer())


def _hsum(builder, vec):
    """The sum of a float vector's lanes, lane 0 first."""
    total = builder.extract_element(vec, _I64(0))
    for i in range(1, vec.type.count):
        total = builder.fadd(total, builder.extract_element(vec, _I64(i)))
    return total


def _neg_inf(width: int = LANES):
    return ir.Constant(ir.VectorType(ir.FloatType(), width), [float("-inf")] * width)


def _splat(builder, value, width: int):
    """``value`` (a float) in all ``width`` lanes of a float vector."""
    vec = ir.Constant(ir.VectorType(ir.FloatType(), width), ir.Undefined)
    for i in range(width):
        vec = builder.insert_element(vec, value, _I64(i))
    return vec


def _vmax(builder, a, b):
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


def _sum_over_bytes(builder, accs, nbytes, table_row, add):
    """``sum_p table_row(p)`` over ``p < nbytes`` added into the partial sums ``accs`` (allocas, already set), unrolled
    over them (:data:`_UNROLL`: independent sums hide the adds' latency); returns their total. ``add``: ``builder.fadd``
    or ``builder.add``."""
    n_main = builder.udiv(nbytes, _I64(len(accs)))
    with cgutils.for_range(builder, n_main) as q:
        p0 = builder.mul(q.index, _I64(len(accs)))
        for j, a in enumerate(accs):
            builder.store(add(builder.load(a), table_row(builder.add(p0, _I64(j)))), a)
    with cgutils.for_range_slice(builder, builder.mul(n_main, _I64(len(accs))), nbytes, _I64(1), inc=True) as (p, _):
        builder.store(add(builder.load(accs[0]), table_row(p)), accs[0])
    total = builder.load(accs[0])
    for a in accs[1:]:
        total = add(total, builder.load(a))
    return total


PREFETCH_AHEAD = 2  # vectors: the ADC kernels prefetch the stored bytes of the vector this far ahead


def _prefetch_bytes(builder, pk, v, row_bytes):
    """Prefetch (into every cache level) the stored bytes of vector ``v + PREFETCH_AHEAD``: every 64 bytes of its row
    and its last byte. The rows are read in order, and the hardware prefetcher alone left each vector's first bytes
    to arrive after its first table lookups: the int8 pass over 384 candidates at 100,000 documents went from 5.0 to
    4.3-4.45 ms on one thread (a scratch timing; docs/benchmarks.md). A prefetch never faults, past the array's end
    included."""
    prefetch = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()] + [ir.IntType(32)] * 3),
        "llvm.prefetch.p0i8")
    i32 = ir.IntType(32)
    start = builder.mul(builder.add(v, _I64(PREFETCH_AHEAD)), row_bytes)
    last = builder.sub(row_bytes, _I64(1))
    with cgutils.for_range_slice(builder, _I64(0), last, _I64(64), inc=True) as (at, _):
        builder.call(prefetch, [builder.gep(pk.data, [builder.add(start, at)]), i32(0), i32(3), i32(1)])
    builder.call(prefetch, [builder.gep(pk.data, [builder.add(start, last)]), i32(0), i32(3), i32(1)])


def _scale_splat(builder, pk, sc, row0, nbytes, width: int):
    """The vector's 1/norm, ``scale[packed[v, nbytes]]`` (its scale byte after the residual bytes), in all ``width``
    lanes of a float vector."""
    sb = builder.zext(builder.load(builder.gep(pk.data, [builder.add(row0, nbytes)])), _I64)
    return _splat(builder, builder.load(builder.gep(sc.data, [sb])), width)


def _table_index(builder, p, b, T, off):
    """Flat index of ``L[p, b, off]`` in a table ``(n_bytes, 256, T)``."""
    return builder.add(builder.mul(builder.add(builder.mul(p, _I64(256)), b), T), off)


def _adc_codegen(scaled: bool, half: bool = False):
    """Code generator of :func:`doc_adc_maxsim` (``scaled=False``) and :func:`doc_adc_maxsim_scaled`; ``half``: the
    table holds float16 bits (``uint16``), each row widened to float32 as it is loaded."""
    def codegen(context, builder, signature, args):
        st, lt, cd, pk = (context.make_array(signature.args[i])(context, builder, args[i]) for i in range(4))
        v0_ = context.cast(builder, args[4], signature.args[4], types.int64)
        v1_ = context.cast(builder, args[5], signature.args[5], types.int64)
        sc = context.make_array(signature.args[6])(context, builder, args[6]) if scaled else None
        code_ty = signature.args[2].dtype
        T = builder.extract_value(st.shape, 1)
        row_bytes = builder.extract_value(pk.shape, 1)  # stored bytes per vector
        nbytes = builder.extract_value(lt.shape, 0)  # residual bytes (the scale byte, if any, follows them)
        accs = [cgutils.alloca_once(builder, _VEC) for _ in range(_UNROLL)]
        best = cgutils.alloca_once(builder, _VEC)
        total = cgutils.alloca_once_value(builder, ir.Constant(ir.FloatType(), 0.0))
        with cgutils.for_range(builder, builder.udiv(T, _I64(LANES))) as g:
            off = builder.mul(g.index, _I64(LANES))
            builder.store(_neg_inf(), best)
            with cgutils.for_range_slice(builder, v0_, v1_, _I64(1), inc=True) as (v, _):
                _prefetch_bytes(builder, pk, v, row_bytes)
                c = context.cast(builder, builder.load(builder.gep(cd.data, [v])), code_ty, types.int64)
                row0 = builder.mul(v, row_bytes)

                def table_row(p):
                    b = builder.zext(builder.load(builder.gep(pk.data, [builder.add(row0, p)])), _I64)
                    idx = _table_index(builder, p, b, T, off)
                    if half:
                        ptr = builder.bitcast(builder.gep(lt.data, [idx]), _HVEC.as_pointer())
                        return builder.fpext(builder.load(ptr, align=2), _VEC)
                    return builder.load(_vec_ptr(builder, lt.data, idx), align=4)

                builder.store(builder.load(_vec_ptr(builder, st.data, builder.add(builder.mul(c, T), off)),
                                           align=4), accs[0])
                for a in accs[1:]:
                    builder.store(ir.Constant(_VEC, [0.0] * LANES), a)
                acc = _sum_over_bytes(builder, accs, nbytes, table_row, builder.fadd)
                if scaled:  # the vector's 1/norm, from its scale byte
                    acc = builder.fmul(acc, _scale_splat(builder, pk, sc, row0, nbytes, LANES))
                builder.store(_vmax(builder, acc, builder.load(best)), best)
            builder.store(builder.fadd(builder.load(total), _hsum(builder, builder.load(best))), total)
        return builder.load(total)
    return codegen


@intrinsic
def doc_adc_maxsim(typingctx, St, L, codes, packed, v0, v1):
    """MaxSim of one query with the stored vectors ``v0:v1`` of a document, scored from the compressed bytes:
    ``sum_t max_{v0<=v<v1} (St[codes[v], t] + sum_p L[p, packed[v, p], t])`` as float32.

    ``St`` float32 ``(K, T)``: centroid scores of the (zero-padded) query tokens; ``L`` float32
    ``(n_bytes, 256, T)``: the per-byte residual score table; ``codes`` ``(n_vectors,)`` integer centroid ids;
    ``packed`` uint8 ``(n_vectors, >= n_bytes)``. ``St[c, t] + sum_p L[...]`` is the dot product of query token
    ``t`` with the decompressed vector, computed without decompressing. Requires ``v1 > v0``; padded tokens (zero
    rows) add exactly 0.

    ``L`` may also be ``uint16`` holding float16 bits (:func:`~.search.half_tables`): half the bytes per lookup, so
    a 16-token table (768 kB at 384-d, 2 bits) stays in a 1 MB L2 cache; each row is widened to float32 as it is
    loaded and sums stay float32, so the result differs from the float32 table's only by the rounding of the
    table's entries to float16 (relative 2**-11 each; :func:`~.search.half_error_bound`).
    """
    if not all(_c_array(a) for a in (St, L, codes, packed)) or L.dtype not in (types.float32, types.uint16) \
            or St.dtype != types.float32:
        return None
    return types.float32(St, L, codes, packed, v0, v1), _adc_codegen(False, L.dtype == types.uint16)


@intrinsic
def doc_adc_maxsim_scaled(typingctx, St, L, codes, packed, v0, v1, scale):
    """:func:`doc_adc_maxsim` of vectors that store a scale byte after their ``n_bytes`` residual bytes: each
    vector's scores are multiplied by ``scale[packed[v, n_bytes]]`` (float32 ``(256,)``: its reconstruction's
    inverse norm, so scores are cosines of unit-length reconstructions) before the max. ``L`` float32 or float16
    bits, as there."""
    if not all(_c_array(a) for a in (St, L, codes, packed, scale)) or L.dtype not in (types.float32, types.uint16) \
            or St.dtype != types.float32:
        return None
    return types.float32(St, L, codes, packed, v0, v1, scale), _adc_codegen(True, L.dtype == types.uint16)


def _adc8_group(context, builder, W, st, lt, sa, cd, pk, sc, code_ty, st_half, v0_, v1_, off, T, total):
    """One group of ``W`` query tokens (from column ``off``) of :func:`doc_adc8_maxsim`: adds
    ``sum_{t in group} max_v`` of the vector scores to ``total``."""
    VF = ir.VectorType(ir.FloatType(), W)
    VI = ir.VectorType(ir.IntType(16), W)
    VB = ir.VectorType(ir.IntType(8), W)
    row_bytes = builder.extract_value(pk.shape, 1)
    nbytes = builder.extract_value(lt.shape, 0)
    accs = [cgutils.alloca_once(builder, VI) for _ in range(_UNROLL)]
    best = cgutils.alloca_once_value(builder, _neg_inf(W))
    steps = builder.load(builder.bitcast(builder.gep(sa.data, [off]), VF.as_pointer()), align=4)
    with cgutils.for_range_slice(builder, v0_, v1_, _I64(1), inc=True) as (v, _):
        _prefetch_bytes(builder, pk, v, row_bytes)
        c = context.cast(builder, builder.load(builder.gep(cd.data, [v])), code_ty, types.int64)
        row0 = builder.mul(v, row_bytes)

        def table_row(p):
            b = builder.zext(builder.load(builder.gep(pk.data, [builder.add(row0, p)])), _I64)
            ptr = builder.bitcast(builder.gep(lt.data, [_table_index(builder, p, b, T, off)]), VB.as_pointer())
            return builder.sext(builder.load(ptr, align=1), VI)

        for a in accs:
            builder.store(ir.Constant(VI, [0] * W), a)
        acc = _sum_over_bytes(builder, accs, nbytes, table_row, builder.add)
        at = builder.gep(st.data, [builder.add(builder.mul(c, T), off)])
        if st_half:
            st_row = builder.fpext(builder.load(builder.bitcast(at, ir.VectorType(ir.HalfType(), W).as_pointer()),
                                                align=2), VF)
        else:
            st_row = builder.load(builder.bitcast(at, VF.as_pointer()), align=4)
        val = builder.fadd(st_row, builder.fmul(builder.sitofp(acc, VF), steps))
        if sc is not None:  # the vector's 1/norm, from its scale byte
            val = builder.fmul(val, _scale_splat(builder, pk, sc, row0, nbytes, W))
        builder.store(_vmax(builder, val, builder.load(best)), best)
    builder.store(builder.fadd(builder.load(total), _hsum(builder, builder.load(best))), total)


def _adc8_codegen(scaled: bool):
    """Code generator of :func:`doc_adc8_maxsim` (``scaled=False``) and :func:`doc_adc8_maxsim_scaled`: groups of
    32 query tokens when ``T`` is a multiple of 32 (one 512-bit register of int16 sums), else of 16."""
    def codegen(context, builder, signature, args):
        st, lt, sa, cd, pk = (context.make_array(signature.args[i])(context, builder, args[i]) for i in range(5))
        v0_ = context.cast(builder, args[5], signature.args[5], types.int64)
        v1_ = context.cast(builder, args[6], signature.args[6], types.int64)
        sc = context.make_array(signature.args[7])(context, builder, args[7]) if scaled else None
        code_ty = signature.args[3].dtype
        st_half = signature.args[0].dtype == types.uint16
        T = builder.extract_value(st.shape, 1)
        total = cgutils.alloca_once_value(builder, ir.Constant(ir.FloatType(), 0.0))
        wide = builder.icmp_unsigned("==", builder.urem(T, _I64(2 * LANES)), _I64(0))
        with builder.if_else(wide) as (then, otherwise):
            for W, branch in ((2 * LANES, then), (LANES, otherwise)):
                with branch:
                    with cgutils.for_range(builder, builder.udiv(T, _I64(W))) as g:
                        _adc8_group(context, builder, W, st, lt, sa, cd, pk, sc, code_ty, st_half, v0_, v1_,
                                    builder.mul(g.index, _I64(W)), T, total)
        return builder.load(total)
    return codegen


def _adc8_types_ok(St, L, steps, codes, packed) -> bool:
    return (all(_c_array(a) for a in (St, L, steps, codes, packed)) and L.dtype == types.int8
            and St.dtype in (types.float32, types.uint16) and steps.dtype == types.float32)


@intrinsic
def doc_adc8_maxsim(typingctx, St, L, steps, codes, packed, v0, v1):
    """:func:`doc_adc_maxsim` with an int8 table: ``sum_t max_{v0<=v<v1} (St[codes[v], t] + steps[t] *
    sum_p L[p, packed[v, p], t])`` as float32.

    ``L`` int8 ``(n_bytes, 256, T)``: the per-byte table of token ``t`` in units of ``steps[t]`` (float32 ``(T,)``),
    summed exactly in int16 (``n_bytes * max|L| <= 32767``: the caller's promise), then scaled once per vector;
    ``St`` float32 or ``uint16`` float16 bits ``(K, T)``. A 32-token int8 table of a 384-d, 2-bit codec is 768 kB,
    inside a 1 MB L2 cache with room for the float16 centroid scores' hot rows, and one 512-bit add serves 32 tokens
    (:func:`~.search.int8_tables`; the error bound is :func:`~.search.int8_error_bound`). Requires ``v1 > v0``; ``T``
    a multiple of :data:`LANES` (groups of 32 tokens when ``T`` is a multiple of 32)."""
    if not _adc8_types_ok(St, L, steps, codes, packed):
        return None
    return types.float32(St, L, steps, codes, packed, v0, v1), _adc8_codegen(False)


@intrinsic
def doc_adc8_maxsim_scaled(typingctx, St, L, steps, codes, packed, v0, v1, scale):
    """:func:`doc_adc8_maxsim` of vectors that store a scale byte after their ``n_bytes`` residual bytes (see
    :func:`doc_adc_maxsim_scaled`)."""
    if not (_adc8_types_ok(St, L, steps, codes, packed) and _c_array(scale)):
        return None
    return types.float32(St, L, steps, codes, packed, v0, v1, scale), _adc8_codegen(True)


@intrinsic
def quantise_columns(typingctx, src, qmax, dst, col, steps):
    """One group of :data:`LANES` tokens of an int8 table: ``src`` float32 ``(n_rows, LANES)`` (C-contiguous), each
    column ``t`` divided by its step ``steps[col + t] = max_r |src[r, t]| / qmax`` (1 for an all-zero column) and
    rounded to nearest (ties to even) into ``dst[r, col + t]``, int8 ``(n_rows, T)``. Two vector passes (largest
    magnitudes, then the quotients, computed as ``src * (1 / step)`` in float32), on the calling thread. Each entry
    lands within ``step * (1/2 + 2**-16)`` of ``src`` for ``qmax <= 127`` (the step's, the inverse's and the
    product's roundings move the quotient by at most ``(qmax + 1) * 2**-23``)."""
    if not (_c_array(src) and _c_array(dst) and _c_array(steps) and src.dtype == types.float32
            and dst.dtype == types.int8 and steps.dtype == types.float32 and isinstance(qmax, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        sa, da = (context.make_array(signature.args[i])(context, builder, args[i]) for i in (0, 2))
        ta = context.make_array(signature.args[4])(context, builder, args[4])
        qm = context.cast(builder, args[1], signature.args[1], types.int64)
        col_ = context.cast(builder, args[3], signature.args[3], types.int64)
        n_rows = builder.extract_value(sa.shape, 0)
        T = builder.extract_value(da.shape, 1)
        fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC]), "llvm.fabs.v16f32")
        rint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC]), "llvm.rint.v16f32")
        top = cgutils.alloca_once_value(builder, ir.Constant(_VEC, [0.0] * LANES))
        with cgutils.for_range(builder, n_rows) as r:
            v = builder.call(fabs, [builder.load(_vec_ptr(builder, sa.data, builder.mul(r.index, _I64(LANES))),
                                                 align=4)])
            builder.store(_vmax(builder, v, builder.load(top)), top)
        m = builder.load(top)
        splat = _splat(builder, builder.sitofp(qm, ir.FloatType()), LANES)
        one = ir.Constant(_VEC, [1.0] * LANES)
        zero = ir.Constant(_VEC, [0.0] * LANES)
        step = builder.select(builder.fcmp_ordered(">", m, zero), builder.fdiv(m, splat), one)
        builder.store(step, _vec_ptr(builder, ta.data, col_), align=4)
        inv = builder.fdiv(one, step)
        VB = ir.VectorType(ir.IntType(8), LANES)
        with cgutils.for_range(builder, n_rows) as r:
            v = builder.load(_vec_ptr(builder, sa.data, builder.mul(r.index, _I64(LANES))), align=4)
            q = builder.fptosi(builder.call(rint, [builder.fmul(v, inv)]), ir.VectorType(ir.IntType(32), LANES))
            at = builder.gep(da.data, [builder.add(builder.mul(r.index, T), col_)])
            builder.store(builder.trunc(q, VB), builder.bitcast(at, VB.as_pointer()), align=1)
        return context.get_dummy_value()
    return types.none(src, qmax, dst, col, steps), codegen


@intrinsic
def round_to_half(typingctx, src, dst):
    """``dst[:] = src`` rounded to float16 (nearest, ties to even): ``src`` float32, ``dst`` uint16 receiving the
    bits, both C-contiguous with the same size, a multiple of :data:`LANES`. Vector conversions on this thread
    (numpy's float16 casts are scalar; torch's would wake its thread pool, whose spinning workers then slow the
    search threads that follow)."""
    if not (_c_array(src) and _c_array(dst) and src.dtype == types.float32 and dst.dtype == types.uint16):
        return None

    def codegen(context, builder, signature, args):
        sa, da = (context.make_array(signature.args[i])(context, builder, args[i]) for i in range(2))
        with cgutils.for_range(builder, builder.udiv(sa.nitems, _I64(LANES))) as i:
            at = builder.mul(i.index, _I64(LANES))
            vec = builder.load(_vec_ptr(builder, sa.data, at), align=4)
            ptr = builder.bitcast(builder.gep(da.data, [at]), _HVEC.as_pointer())
            builder.store(builder.fptrunc(vec, _HVEC), ptr, align=2)
        return context.get_dummy_value()
    return types.none(src, dst), codegen


@intrinsic
def doc_centroid_maxsim(typingctx, St, codes, v0, v1):
    """Centroid-only MaxSim of one query with the vectors ``v0:v1`` of a document (PLAID's centroid interaction):
    ``sum_t max_{v0<=v<v1} St[codes[v], t]`` as float32. Requires ``v1 > v0``; see :func:`doc_adc_maxsim`. Groups of
    16 tokens one after the other, each over the vectors in pairs (two independent maxima); 32 tokens (the padded
    width of 17-32) both groups per vector."""
    if not (_c_array(St) and _c_array(codes)):
        return None
    sig = types.float32(St, codes, v0, v1)

    def codegen(context, builder, signature, args):
        st, cd = (context.make_array(signature.args[i])(context, builder, args[i]) for i in range(2))
        v0_ = context.cast(builder, args[2], signature.args[2], types.int64)
        v1_ = context.cast(builder, args[3], signature.args[3], types.int64)
        code_ty = signature.args[1].dtype
        T = builder.extract_value(st.shape, 1)
        bests = [cgutils.alloca_once(builder, _VEC) for _ in range(2)]
        total = cgutils.alloca_once_value(builder, ir.Constant(ir.FloatType(), 0.0))
        n = builder.sub(v1_, v0_)
        n_pairs = builder.udiv(n, _I64(2))

        def row(v, off):
            c = context.cast(builder, builder.load(builder.gep(cd.data, [v])), code_ty, types.int64)
            return builder.load(_vec_ptr(builder, st.data, builder.add(builder.mul(c, T), off)), align=4)

        two = builder.icmp_unsigned("==", T, _I64(2 * LANES))
        with builder.if_else(two) as (then, otherwise):
            with then:  # 32 tokens: both halves of each vector's row (its two cache lines) at once: ~10% faster
                for b in bests:
                    builder.store(_neg_inf(), b)
                with cgutils.for_range_slice(builder, v0_, v1_, _I64(1), inc=True) as (v, _):
                    for j, b in enumerate(bests):
                        builder.store(_vmax(builder, row(v, _I64(j * LANES)), builder.load(b)), b)
                for b in bests:
                    builder.store(builder.fadd(builder.load(total), _hsum(builder, builder.load(b))), total)
            with otherwise:
                with cgutils.for_range(builder, builder.udiv(T, _I64(LANES))) as g:
                    off = builder.mul(g.index, _I64(LANES))
                    for b in bests:
                        builder.store(_neg_inf(), b)
                    with cgutils.for_range(builder, n_pairs) as q:
                        v = builder.add(v0_, builder.mul(q.index, _I64(2)))
                        for j, b in enumerate(bests):
                            builder.store(_vmax(builder, row(builder.add(v, _I64(j)), off), builder.load(b)), b)
                    with cgutils.for_range_slice(builder, builder.add(v0_, builder.mul(n_pairs, _I64(2))), v1_,
                                                 _I64(1), inc=True) as (v, _):
                        builder.store(_vmax(builder, row(v, off), builder.load(bests[0])), bests[0])
                    m = _vmax(builder, builder.load(bests[0]), builder.load(bests[1]))
                    builder.store(builder.fadd(builder.load(total), _hsum(builder, m)), total)
        return builder.load(total)
    return sig, codegen


def half_centroid_blocks(centroids: np.ndarray) -> np.ndarray:
    """``centroids`` ``(K, dim)`` (float16 values) as blocks of :data:`LANES` centroids, dimension-major: uint16
    float16 bits ``(ceil(K / LANES), dim, LANES)``, ``[b, d, i]`` = dimension ``d`` of centroid ``b * LANES + i``
    (zero rows pad the last block); cache-line aligned. The input of :func:`centroid_block_scores`."""
    K, dim = centroids.shape
    n_blocks = -(-K // LANES)
    padded = np.zeros((n_blocks * LANES, dim), dtype=np.float16)
    padded[:K] = centroids
    out = aligned_empty((n_blocks, dim, LANES), np.uint16)
    out[:] = padded.reshape(n_blocks, LANES, dim).transpose(0, 2, 1).view(np.uint16)
    return out


BLOCK_TOKENS_MAX = 28  # centroid_block_scores: tokens scored in one pass over a block (a register each, 32 in all)


@intrinsic
def centroid_block_scores(typingctx, blocks, Qt, St, b0, b1, cols, zero_cols):
    """``St[c, cols[j]] = sum_d centroid[c, d] * Qt[d, j]`` for the centroids of blocks ``b0:b1`` of
    :func:`half_centroid_blocks` ``(n_blocks, dim, LANES)`` (float16 bits): float32 products summed in float32 in
    dimension order (one fused multiply-add each); ``Qt`` float32 ``(dim, n)`` (the query tokens as columns, any
    ``n``), ``cols`` int64 ``(n,)`` their columns in ``St`` float32 ``(n_blocks * LANES, T)``; the columns
    ``zero_cols`` (int64) of those rows are set to 0 (what a zero query token scores: padding costs nothing). Per block
    and group of tokens (of 16 while more than :data:`BLOCK_TOKENS_MAX` are left, then all the rest), one vector sum per
    token (one lane per centroid, held in a register): each centroid value is loaded and widened once per group, each
    query value broadcast from memory."""
    if not (_c_array(blocks) and _c_array(Qt) and _c_array(St) and _c_array(cols) and _c_array(zero_cols)
            and blocks.dtype == types.uint16 and Qt.dtype == types.float32 and St.dtype == types.float32
            and cols.dtype == types.int64 and zero_cols.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        bl, qa, sa, ca, za = (context.make_array(signature.args[i])(context, builder, args[i])
                              for i in (0, 1, 2, 5, 6))
        b0_ = context.cast(builder, args[3], signature.args[3], types.int64)
        b1_ = context.cast(builder, args[4], signature.args[4], types.int64)
        dim = builder.extract_value(bl.shape, 1)
        n = builder.extract_value(qa.shape, 1)
        T = builder.extract_value(sa.shape, 1)
        accs = [cgutils.alloca_once(builder, _VEC) for _ in range(BLOCK_TOKENS_MAX)]
        zero = ir.Constant(_VEC, [0.0] * LANES)
        splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VEC, [_VEC] * 3), "llvm.fma.v16f32")

        def group(b, j0, width):
            """Tokens ``j0 : j0 + width`` (a constant width) of block ``b``."""
            for a in accs[:width]:
                builder.store(zero, a)
            with cgutils.for_range(builder, dim) as dd:
                d = dd.index
                at = builder.mul(builder.add(builder.mul(b, dim), d), _I64(LANES))
                ptr = builder.bitcast(builder.gep(bl.data, [at]), _HVEC.as_pointer())
                cv = builder.fpext(builder.load(ptr, align=2), _VEC)
                q_row = builder.gep(qa.data, [builder.add(builder.mul(d, n), j0)])  # Qt[d, j0:j0 + width]
                for j, a in enumerate(accs[:width]):
                    qv = builder.insert_element(ir.Constant(_VEC, ir.Undefined),
                                                builder.load(builder.gep(q_row, [_I64(j)])), _I64(0))
                    qv = builder.shuffle_vector(qv, ir.Constant(_VEC, ir.Undefined), splat_mask)
                    builder.store(builder.call(fma, [cv, qv, builder.load(a)]), a)
            row0 = builder.mul(b, _I64(LANES))
            for j, a in enumerate(accs[:width]):  # lane i of token j's sums is St[b * LANES + i, cols[j0 + j]]
                col = builder.load(builder.gep(ca.data, [builder.add(j0, _I64(j))]))
                acc = builder.load(a)
                for i in range(LANES):
                    at = builder.add(builder.mul(builder.add(row0, _I64(i)), T), col)
                    builder.store(builder.extract_element(acc, _I64(i)), builder.gep(sa.data, [at]))

        # groups of 16 tokens while more than BLOCK_TOKENS_MAX are left, then the rest (1 to BLOCK_TOKENS_MAX) in one
        # pass: a centroid block is widened once for all of them (a query of 23 tokens took 16 + 4 + 2 + 1 passes)
        big = builder.icmp_unsigned(">", n, _I64(BLOCK_TOKENS_MAX))
        n_full = builder.select(big, builder.udiv(builder.sub(n, _I64(BLOCK_TOKENS_MAX - LANES + 1)), _I64(LANES)),
                                _I64(0))
        rest = builder.sub(n, builder.mul(n_full, _I64(LANES)))
        with cgutils.for_range_slice(builder, b0_, b1_, _I64(1), inc=True) as (b, _):
            with cgutils.for_range(builder, n_full) as g:
                group(b, builder.mul(g.index, _I64(LANES)), LANES)
            j0 = builder.mul(n_full, _I64(LANES))
            after = builder.append_basic_block("rest_done")
            switch = builder.switch(rest, after)
            for width in range(1, BLOCK_TOKENS_MAX + 1):
                case = builder.append_basic_block(f"rest_{width}")
                switch.add_case(_I64(width), case)
                builder.position_at_end(case)
                group(b, j0, width)
                builder.branch(after)
            builder.position_at_end(after)
            row0 = builder.mul(b, _I64(LANES))
            with cgutils.for_range(builder, builder.extract_value(za.shape, 0)) as z:
                col = builder.load(builder.gep(za.data, [z.index]))
                for i in range(LANES):
                    at = builder.add(builder.mul(builder.add(row0, _I64(i)), T), col)
                    builder.store(ir.Constant(ir.FloatType(), 0.0), builder.gep(sa.data, [at]))
        return context.get_dummy_value()
    return types.none(blocks, Qt, St, b0, b1, cols, zero_cols), codegen
