"""Encoding runtimes: every precision/backend gives vectors close to fp32, and defaults follow the hardware."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pyterrier_lateint import ColBERT
from pyterrier_lateint.models import runtime

TEXTS = ["the electron spin resonance of metals", "heat flow in thin films", "", "a b c " * 80]


@pytest.fixture(scope="module")
def fp32_vectors(default_model):
    assert default_model.precision == "fp32"
    return default_model.encode_docs(TEXTS)


def cosines(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    assert [x.shape for x in a] == [x.shape for x in b]
    return np.concatenate([(x * y).sum(1) for x, y in zip(a, b)])


def test_bf16_matches_fp32(fp32_vectors):
    model = ColBERT.from_pretrained(precision="bf16", device="cpu")
    cos = cosines(fp32_vectors, model.encode_docs(TEXTS))
    assert cos.min() > 0.999
    assert not np.array_equal(np.concatenate(fp32_vectors), np.concatenate(model.encode_docs(TEXTS)))  # it ran bf16


def test_int8_is_close_but_lossy(fp32_vectors):
    model = ColBERT.from_pretrained(precision="int8", device="cpu")
    cos = cosines(fp32_vectors, model.encode_docs(TEXTS))
    assert 0.5 < cos.mean() < 0.9999  # documented as lossy on this model: mean cosine about 0.92


def test_onnx_fp32_matches_torch(fp32_vectors, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("LATEINT_CACHE", str(tmp_path))
    model = ColBERT.from_pretrained(precision="fp32", backend="onnx", device="cpu")
    cos = cosines(fp32_vectors, model.encode_docs(TEXTS))
    assert cos.min() > 0.99999
    assert list(tmp_path.glob("onnx/*.onnx"))  # exported once into the cache, not left as .tmp
    assert not list(tmp_path.glob("onnx/*.tmp"))


def test_runtime_is_rebuilt_after_reset(default_model):
    first = default_model.runtime
    assert default_model.runtime is first
    default_model.reset_runtime()
    assert default_model.runtime is not first


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "fp8"}, "precision"),
    ({"backend": "tensorrt"}, "backend"),
    ({"precision": "fp16"}, "GPUs"),  # on a CPU
    ({"precision": "bf16", "backend": "onnx"}, "onnx"),
])
def test_bad_runtime_settings_fail_at_load(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ColBERT.from_pretrained(device="cpu", **kwargs)


def test_default_precision(monkeypatch):
    monkeypatch.delenv("LATEINT_PRECISION", raising=False)
    assert runtime.default_precision(torch.device("cuda")) == runtime.CUDA_DEFAULT_PRECISION == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.default_precision(torch.device("cpu")) == "bf16"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.default_precision(torch.device("cpu")) == "fp32"
    monkeypatch.setenv("LATEINT_PRECISION", "int8")
    assert runtime.default_precision(torch.device("cpu")) == "int8"
    monkeypatch.setenv("LATEINT_PRECISION", "half")
    with pytest.raises(ValueError, match="LATEINT_PRECISION"):
        runtime.default_precision(torch.device("cpu"))


def test_cpu_flag_detection_reads_cpuinfo(tmp_path, monkeypatch):
    import builtins
    fake = tmp_path / "cpuinfo"
    real_open = builtins.open
    for flags, expected in (("fpu avx2 avx512f", False), ("fpu avx512f avx512_bf16", True), ("amx_bf16 sse", True)):
        fake.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(fake if p == "/proc/cpuinfo" else p, *a, **k))
        assert runtime.cpu_has_native_bf16() is expected
