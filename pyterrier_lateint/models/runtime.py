"""Inference runtimes: how a :class:`LateInteractionModule` is executed when encoding (not when training).

``make_runtime(module, precision, backend, device)`` returns a callable ``(input_ids (B, L) int64,
attention_mask (B, L) int64) -> (B, L, dim)`` float32 tensor:

- ``backend="torch"``: ``precision="fp32"`` runs the module as is; ``"bf16"``/``"fp16"`` run it under autocast
  (bf16 uses the CPU's AVX512-BF16/AMX units where present; fp16 is for GPUs); ``"int8"`` runs a copy whose
  linear layers are dynamically quantised to int8 (CPU only).
- ``backend="onnx"``: exports the module to ONNX once (cached by a hash of its weights) and runs it with
  ONNX Runtime's CPU execution provider; ``precision="int8"`` quantises the exported graph's weights.

Runtimes that copy weights (int8, onnx) are rebuilt by ``ColBERT.reset_runtime()`` after training.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..settings import PRECISION_ENV, cache_dir, forced_precision

logger = logging.getLogger(__name__)

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


def default_precision(device: torch.device) -> str:
    """fp16 on CUDA; on a CPU, bf16 where the CPU has bf16 units (measured on Vaswani: 2.5x the fp32
    documents/s with every vector's cosine to fp32 >= 0.9999, see benchmarks/bench_encoding.py), else fp32.
    The environment variable ``LATEINT_PRECISION`` overrides it (e.g. ``fp32`` for bit-exact fp32 vectors)."""
    forced = forced_precision()
    if forced:
        if forced not in PRECISIONS:
            raise ValueError(f"{PRECISION_ENV}={forced!r} is not one of {PRECISIONS}")
        return forced
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


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
