"""Single C emitters against torch on random shapes: attention and batched matrix products, with the
host's vector width (the vectorised kernels) and without (plain C99, the portable export)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nets import assert_close
from thinkonce.native import backend as native_backend
from thinkonce.native.cache import compiled_library
from thinkonce.native.codegen import generate
from thinkonce.native.compiler import find_toolchain, why_no_toolchain
from thinkonce.native.loader import NativeStep, load
from thinkonce.native.trace import record

pytestmark = pytest.mark.skipif(not native_backend.available(), reason=f"native backend: {why_no_toolchain()}")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def _run_c(fn, x: torch.Tensor, vector: bool) -> tuple[torch.Tensor, torch.Tensor, set[str]]:
    """``fn(x)`` recorded, generated (host vector width or 0), compiled and run; (C result, eager
    result, the ATen packets recorded)."""
    tc = find_toolchain()
    trace, (y, _) = record(lambda x, st: (fn(x), st), x.clone(), {})
    cs = generate(trace, tc.vector_width if vector else 0)
    yn, _ = NativeStep(cs, load(compiled_library(cs.source, tc)))(x.clone(), {})
    return yn, y, {op.packet for op in trace.ops}


def _vectors():
    tc = find_toolchain()
    return [False, True] if tc is not None and tc.vector_width else [False]


_SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(b=st.integers(1, 2), h=st.integers(1, 3), L=st.integers(1, 20), S=st.integers(1, 37),
       E=st.integers(1, 37), causal=st.booleans(), strided=st.booleans(), mag=st.sampled_from([1.0, 30.0]),
       seed=st.integers(0, 2**16))
@pytest.mark.parametrize("vector", _vectors())
def test_sdpa_equals_torch(vector, b, h, L, S, E, causal, strided, mag, seed) -> None:
    """F.scaled_dot_product_attention (recorded as the flash-for-CPU op), causal or not, L != S, on
    contiguous heads or on head-interleaved views (what a multi-head layer's reshape gives); ``mag``
    30 spreads the scores so that exponents fall below the vector exp's clamp at -87."""
    torch.manual_seed(seed)
    Ev = E  # E != Ev: torch decomposes (the test below)
    nq, nk, nv = b * h * L * E, b * h * S * E, b * h * S * Ev
    x = torch.randn(nq + nk + nv)

    def heads(t, n, f):  # (b, h, n, f): contiguous, or a transposed view of (b, n, h, f)
        return t.view(b, n, h, f).transpose(1, 2) if strided else t.view(b, h, n, f)

    def fn(x):
        q, k, v = heads(x[:nq] * mag, L, E), heads(x[nq:nq + nk], S, E), heads(x[nq + nk:], S, Ev)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal) * 1.0

    got, want, ops = _run_c(fn, x, vector)
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in ops
    assert_close(got, want)


@pytest.mark.parametrize("vector", _vectors())
def test_sdpa_decomposed_math_path_equals_torch(vector) -> None:
    """Value width != key width: torch decomposes attention (scale, bmm, _safe_softmax, bmm). (Causal,
    the decomposition also builds its mask with tril/masked ops that have no emitter: not lowered.)"""
    causal = False
    torch.manual_seed(1)
    x = torch.randn(3 * 9 * 5 * 2 + 3 * 9 * 7)
    fn = lambda x: F.scaled_dot_product_attention(x[:135].view(1, 3, 9, 5), x[135:270].view(1, 3, 9, 5),
                                                  x[270:].view(1, 3, 9, 7), is_causal=causal) * 1.0
    got, want, ops = _run_c(fn, x, vector)
    assert {"aten.bmm", "aten._safe_softmax"} <= ops, ops
    assert_close(got, want)


@_SETTINGS
@given(nb=st.integers(1, 3), M=st.integers(1, 9), K=st.integers(1, 40), N=st.integers(1, 40),
       b_transposed=st.booleans(), seed=st.integers(0, 2**16))
@pytest.mark.parametrize("vector", _vectors())
def test_bmm_equals_torch(vector, nb, M, K, N, b_transposed, seed) -> None:
    """torch.bmm of two computed operands (no constant side): contiguous B rows take the vector
    kernel, a transposed B the scalar loops; column counts that do not fill a vector take the tail."""
    torch.manual_seed(seed)
    x = torch.randn(nb * M * K + nb * K * N)

    def fn(x):
        a = x[:nb * M * K].view(nb, M, K)
        bm = x[nb * M * K:].view(nb, N, K).transpose(1, 2) if b_transposed else x[nb * M * K:].view(nb, K, N)
        return torch.bmm(a * 1.0, bm * 1.0 if not b_transposed else bm)

    got, want, ops = _run_c(fn, x, vector)
    assert "aten.bmm" in ops
    assert_close(got, want)


@_SETTINGS
@given(rows=st.integers(1, 6), n=st.integers(1, 70), affine=st.booleans(), strided=st.booleans(),
       seed=st.integers(0, 2**16))
@pytest.mark.parametrize("vector", _vectors())
def test_layer_norm_equals_torch(vector, rows, n, affine, strided, seed) -> None:
    """F.layer_norm over the last dimension (lengths below, at and past whole vectors), with or without
    weight and bias, on contiguous rows or rows of a transposed view (the scalar loops)."""
    torch.manual_seed(seed)
    x = torch.randn(rows * n) * 3 + 1
    w, b = (torch.randn(n), torch.randn(n)) if affine else (None, None)
    fn = lambda x: F.layer_norm(x.view(n, rows).t() if strided else x.view(rows, n), (n,), w, b)
    got, want, ops = _run_c(fn, x, vector)
    assert "aten.native_layer_norm" in ops
    assert_close(got, want)


@_SETTINGS
@given(rows=st.integers(1, 5), n=st.integers(1, 70), dim=st.sampled_from([-1, 0]), mag=st.sampled_from([1.0, 40.0]),
       seed=st.integers(0, 2**16))
@pytest.mark.parametrize("vector", _vectors())
def test_softmax_equals_torch(vector, rows, n, dim, mag, seed) -> None:
    """torch.softmax along a contiguous dimension (the vector exp) or a strided one (scalar loops);
    ``mag`` 40 puts exponents below the vector exp's clamp."""
    torch.manual_seed(seed)
    x = torch.randn(rows * n) * mag
    got, want, ops = _run_c(lambda x: torch.softmax(x.view(rows, n), dim), x, vector)
    assert "aten._softmax" in ops
    assert_close(got, want)


@_SETTINGS
@given(c=st.integers(1, 5), n=st.integers(6, 90), k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(1, 9),
       seed=st.integers(0, 2**16))
@pytest.mark.parametrize("vector", _vectors())
def test_copy_rewrites_equal_torch(vector, c, n, k, s, p, seed) -> None:
    """The copy-removing rewrites of fuse.py on one graph: a cat of computed operands (written in
    place into the cat's output), a clone read through a view of it (dropped), an im2col copy read by
    a matrix product with a constant side (dropped: the product reads the unfolded source), and the
    vector sum/mean (rows past and below four vectors)."""
    torch.manual_seed(seed)
    x = torch.randn(c * n)
    wt = torch.randn(p, c * k)

    def fn(x):
        v = x.view(1, c, n)
        r = torch.cat([torch.relu(v * 2.0), v[..., 1:] + 1.0], -1)  # (1, c, 2n - 1)
        tail = r[..., 2:].clone()
        cols = r.unfold(-1, k, s).permute(1, 3, 0, 2).reshape(c * k, -1)  # im2col: (c*k, frames) copy
        y = wt @ cols
        return torch.cat([tail.mean(-1).reshape(-1), tail.sum(-1).reshape(-1), y.reshape(-1)])

    got, want, ops = _run_c(fn, x, vector)
    assert {"aten.cat", "aten.mean", "aten.sum"} <= ops
    assert_close(got, want)
