"""Inference runtimes: how a :class:`LateInteractionModule` is executed when encoding (not when training).

``make_runtime(module, precision, backend, device)`` returns a callable ``(input_ids (B, L) int64,
attention_mask (B, L) int64) -> (B, L, dim)`` float32 tensor:

- ``backend="torch"``: ``precision="fp32"`` runs the module as is; ``"bf16"``/``"fp16"`` run it under autocast
  (bf16 uses the CPU's AVX512-BF16/AMX units where present; fp16 is for GPUs); ``"int8"`` runs a copy whose
  linear layers are dynamically quantised to int8 (CPU only).
- ``backend="onnx"``: exports the module to ONNX once (cached by a hash of its weights) and runs it with
  ONNX Runtime's CPU execution provider; ``precision="int8"`` quantises the exported graph's weights.

Runtimes that copy weights (int8, onnx) are rebuilt by ``ColBERT.reset_runtime()`` after training.

:class:`EncodePlan` says how texts are batched and fed to the device (:func:`encode_plan`): on a GPU, length
buckets (few distinct shapes), token-budget batches, tokenisation in a background thread and pinned-memory copies;
on a CPU, length-sorted batches; with ``batch_invariant=True``, batches whose shape depends on each text's own length
only, so a text's vectors do not depend on the texts encoded with it. The CUDA default precision is :data:`CUDA_DEFAULT_PRECISION`, to be set from
``benchmarks/bench_gpu.py``'s measurement.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..settings import PRECISION_ENV, cache_dir, forced_precision

logger = logging.getLogger(__name__)

def check_device(device: str) -> None:
    """``ValueError`` naming the fix when ``device`` is not a torch device string or this torch cannot use it (a
    ``cuda`` device on a CPU-only build or a machine without a GPU; an ``mps`` device off Apple silicon), so that a
    retriever fails when it is made, not at its first search."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device={device!r} is not a torch device (examples: 'cpu', 'cuda', 'cuda:1'): {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ValueError(f"device={device!r}, but this torch ({torch.__version__}, {build}) sees no GPU; "
                             "use device='cpu' (or leave device=None to choose automatically), or install a CUDA "
                             "build of torch on a machine with a GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}, but this machine has {torch.cuda.device_count()} GPU(s) "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r}, but MPS is not available here; use device='cpu'")


PRECISIONS = ("fp32", "bf16", "fp16", "int8")
BACKENDS = ("torch", "onnx")

Runtime = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16; read from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


# The precision encoding runs in on a CUDA GPU unless the user or ``LATEINT_PRECISION`` says otherwise.
# ``benchmarks/bench_gpu.py`` measures encode_docs documents/s at fp32, bf16 and fp16 (cold and warm) and prints
# which is fastest; set this to its answer. Chosen by the one GPU measurement so far (issue 12, an H200, with the
# encoding path before length buckets and background tokenisation): fp32 5,512 then 7,165 documents/s, fp16 1,343
# then 5,772 (cold then warm); bf16 was not measured. Re-check with bench_gpu.py on the current path.
CUDA_DEFAULT_PRECISION = "fp32"


def default_precision(device: torch.device) -> str:
    """:data:`CUDA_DEFAULT_PRECISION` on CUDA; on a CPU, bf16 where the CPU has bf16 units (measured on Vaswani:
    2.5x the fp32 documents/s with every vector's cosine to fp32 >= 0.9999, see benchmarks/bench_encoding.py),
    else fp32. The environment variable ``LATEINT_PRECISION`` overrides it (e.g. ``fp32`` for bit-exact fp32
    vectors)."""
    forced = forced_precision()
    if forced:
        if forced not in PRECISIONS:
            raise ValueError(f"{PRECISION_ENV}={forced!r} is not one of {PRECISIONS}")
        return forced
    if device.type == "cuda":
        return CUDA_DEFAULT_PRECISION
    return "bf16" if cpu_has_native_bf16() else "fp32"


@dataclass(frozen=True)
class EncodePlan:
    """How ``encode_queries`` / ``encode_docs`` feed texts to the device (:func:`encode_plan` picks one per device).

    - ``bucket``: a batch's width (tokens) is its longest sequence rounded up to a multiple of this, so the
      device sees few distinct shapes (kernels tuned once per shape); 1 = exactly the longest.
    - ``tokens_per_batch``: batches hold ``max(batch_size, tokens_per_batch // width)`` sequences, so short
      sequences fill the device; 0 = ``batch_size`` sequences.
    - ``rows``: batch-invariant encoding. Every batch then has exactly ``rows`` rows (filler rows past the last
      sequence) and holds sequences whose own length rounds up to the same width, so the shape a sequence is encoded
      in depends on its length only: bf16 matrix products pick their kernels (and so their summation order) by
      shape, and a text encoded alone or among others then gets the same vectors, bit for bit. ``batch_size`` and
      ``tokens_per_batch`` are not used; 0 = off. ``query_rows``: the same for queries (0 = ``rows``); one row
      keeps a single query as fast as without invariance.
    - ``chunk``: texts tokenised and length-sorted together (0 = all at once); ``background``: tokenise and
      assemble the next batches in a thread while the device encodes; ``pinned``: page-locked host buffers with
      asynchronous copies (CUDA).
    """
    bucket: int = 1
    tokens_per_batch: int = 0
    rows: int = 0
    query_rows: int = 0
    chunk: int = 0
    background: bool = False
    pinned: bool = False

    def __post_init__(self) -> None:
        if self.bucket < 1 or min(self.tokens_per_batch, self.chunk, self.rows, self.query_rows) < 0:
            raise ValueError(f"EncodePlan needs bucket >= 1, tokens_per_batch >= 0, rows >= 0, query_rows >= 0 and "
                             f"chunk >= 0, not {self}")


# The plan on a CPU: length-sorted batches of ``batch_size`` texts, padded to their longest. Fastest, but at bf16 a
# text's vectors move (by up to ~2e-3, tests/test_encoding_determinism.py) with the texts encoded with it.
CPU_PLAN = EncodePlan()

# Rows of every document / query batch when encoding batch-invariantly (``batch_invariant=True``,
# ``$LATEINT_BATCH_INVARIANT=1``). What it costs: ``python benchmarks/bench_encoding.py --configs bf16-torch
# bf16-torch-invariant`` (docs/benchmarks.md, "Encoding speed").
INVARIANT_ROWS = 32
INVARIANT_QUERY_ROWS = 1

# The plan on GPUs (and other accelerators). Not yet tuned by a GPU measurement: benchmarks/bench_gpu.py reports
# encode_docs documents/s with it.
ACCELERATOR_PLAN = EncodePlan(bucket=16, tokens_per_batch=32768, chunk=2048, background=True, pinned=True)


def encode_plan(device: torch.device, batch_invariant: bool = False) -> EncodePlan:
    """The default :class:`EncodePlan` on ``device``: :data:`CPU_PLAN` on a CPU, :data:`ACCELERATOR_PLAN`
    elsewhere (pinned memory only on CUDA); ``batch_invariant``: the same with ``rows=``:data:`INVARIANT_ROWS` and
    16-token width buckets."""
    plan = CPU_PLAN if device.type == "cpu" else \
        dataclasses.replace(ACCELERATOR_PLAN, pinned=ACCELERATOR_PLAN.pinned and device.type == "cuda")
    if batch_invariant:
        plan = dataclasses.replace(plan, bucket=16, rows=INVARIANT_ROWS, query_rows=INVARIANT_QUERY_ROWS)
    return plan


def make_runtime(module: nn.Module, precision: str, backend: str, device: torch.device) -> Runtime:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "onnx":
        if device.type != "cpu":
            raise ValueError("backend='onnx' runs on the CPU; use backend='torch' on a GPU")
        if precision not in ("fp32", "int8"):
            raise ValueError("backend='onnx' supports precision 'fp32' or 'int8'")
        return OnnxRuntime(module, quantize=precision == "int8")
    if precision == "fp32":
        return lambda ids, att: module(ids, att).float()
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError("precision='int8' (dynamic quantisation) runs on the CPU only")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
            quantised = torch.ao.quantization.quantize_dynamic(copy.deepcopy(module).cpu(), {nn.Linear},
                                                               dtype=torch.qint8)
        return lambda ids, att: quantised(ids, att).float()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("precision='fp16' is for GPUs; on a CPU use 'bf16' or 'fp32'")

    def run(ids: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return module(ids, att).float()
    return run


def _weights_hash(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class OnnxRuntime:
    """The module exported to ONNX and run by ONNX Runtime on the CPU (needs ``pip install onnxruntime onnx``)."""

    def __init__(self, module: nn.Module, quantize: bool = False, cache: Optional[Path] = None,
                 threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError as ex:
            raise ImportError("backend='onnx' needs ONNX Runtime: pip install 'pyterrier-lateint[onnx]'") from ex
        root = Path(cache or cache_dir() / "onnx")
        root.mkdir(parents=True, exist_ok=True)
        key = _weights_hash(module)
        path = root / f"{key}.onnx"
        if not path.exists():
            self._export(module, path)
        if quantize:
            qpath = root / f"{key}.int8.onnx"
            if not qpath.exists():
                from onnxruntime.quantization import QuantType, quantize_dynamic
                tmp = qpath.with_suffix(".tmp")
                quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
                os.replace(tmp, qpath)
            path = qpath
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    @staticmethod
    def _export(module: nn.Module, path: Path) -> None:
        logger.info("exporting the encoder to ONNX: %s", path)
        module = copy.deepcopy(module).cpu().eval()
        ids = torch.ones(2, 8, dtype=torch.long)
        att = torch.ones(2, 8, dtype=torch.long)
        tmp = path.with_suffix(".tmp")
        axes = {0: "batch", 1: "length"}
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (ids, att), str(tmp), input_names=["input_ids", "attention_mask"],
                              output_names=["vectors"], opset_version=17, dynamo=False,
                              dynamic_axes={"input_ids": axes, "attention_mask": axes, "vectors": axes})
        os.replace(tmp, path)  # only a complete export is ever found in the cache

    def __call__(self, ids: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"input_ids": ids.cpu().numpy(), "attention_mask": att.cpu().numpy()})[0]
        return torch.from_numpy(out).float()
