"""The streaming benchmark: the hand-written ring-buffer floor is exact, and the quick run writes the
JSON and BENCHMARKS.md that the full run writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import ring_buffer  # noqa: E402
import streaming  # noqa: E402

from thinkonce.models import acc_seizure, eeg_seizure, ppg_hr  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """Small single-stream steps: one thread (spinning OpenMP threads on shared cores cost ms per op)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _window_outputs(rn: ring_buffer.RingNet, sig: torch.Tensor, window: int, hop: int, preroll: int) -> dict[int, torch.Tensor]:
    """Ring-buffer outputs keyed by the window's end (samples of ``sig``), hop by hop."""
    st = rn.init_state(sig.shape[0], preroll=preroll)
    out = {}
    for e in range(hop, sig.shape[-1] + 1, hop):
        y, st = rn.step(sig[..., e - hop:e], st)
        if e >= window:
            out[e] = y
    return out


def _check(outs: dict[int, torch.Tensor], ref) -> None:
    assert outs
    for e, y in outs.items():
        r = ref(e)
        scale = r.abs().max().clamp_min(1e-6)
        assert (y - r).abs().max() <= 1e-5 * scale + 1e-6, f"window ending at {e}"


def test_ring_buffer_anchor_continuous_equals_trunk():
    torch.manual_seed(0)
    net = streaming.AnchorNet().eval()
    rn = ring_buffer.for_network("anchor", net, window=False)
    sig = torch.randn(2, 1, 203)
    st = rn.init_state(2)
    outs, pos = [], 0
    for n in [1, 1, 2, 5, 1, 3, 7, 1, 64, 1, 1, 116]:  # any chunking, odd lengths through MaxPool 2
        y, st = rn.step(sig[..., pos:pos + n], st)
        pos += n
        if y is not None:
            outs.append(y)
    assert pos == sig.shape[-1]
    with torch.no_grad():
        ref = net.trunk(sig)
    got = torch.cat(outs, dim=2)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["anchor", "ppg", "eeg", "acc"])
def test_ring_buffer_window_equals_model_on_extended_window(name):
    """Window mode: each output equals the model run on all the signal seen (after the zero preroll),
    features cropped to the window before the head (signal padding; 'same' convs pad the right edge)."""
    torch.manual_seed(1)
    if name == "anchor":
        net, c, W, H = streaming.AnchorNet().eval(), 1, 256, 2
        feats, head, F = net.trunk, (lambda f: net.fc(f.mean(-1))), 128
    elif name == "ppg":
        net, c, W, H = ppg_hr().eval(), 1, 256, 64
        feats, F = net.features, 16
        head = lambda f: net.head(f) * net.hr_scale + net.hr_offset  # noqa: E731
    elif name == "eeg":
        net, c, W, H = streaming._randomise_bn(eeg_seizure()).eval(), 18, 1024, 256
        feats, F = net.features, 16
        head = lambda f: torch.flatten(net.head(f), 1)  # noqa: E731
    else:
        net, c, W, H = streaming._randomise_bn(acc_seizure()).eval(), 4, 960, 160
        feats, F = net.features, 960
        head = lambda f: net.head(f.mean(-1))  # noqa: E731
    rn = ring_buffer.for_network(name, net)
    pre = -(-(W * 2 + 64) // rn.stride) * rn.stride
    n = W + 3 * H if name != "anchor" else W + 6 * H
    sig = torch.randn(2, c, n)
    outs = _window_outputs(rn, sig, W, H, pre)
    full = torch.cat([sig.new_zeros(2, c, pre), sig], dim=2)

    def ref(e):
        with torch.no_grad():
            f = feats(full[..., : pre + e])
            return head(f[..., -F:])

    _check(outs, ref)


def test_min_state_counts_layers():
    net = streaming.AnchorNet().eval()
    rn = ring_buffer.for_network("anchor", net)
    ms = rn.min_state()
    # 6 convs of kernel 5: 4 frames each of 1, 32, 32, 32, 32, 32 channels; head 128 frames x 32
    assert ms["trunk_aligned_bytes"] == 4 * 4 * (1 + 5 * 32)
    assert ms["trunk_bytes"] == ms["trunk_aligned_bytes"] + 4 * 32  # MaxPool 2 holds up to 1 frame
    assert ms["head_bytes"] == 4 * 128 * 32
    assert ms["total_bytes"] == ms["trunk_bytes"] + ms["head_bytes"]


def test_quick_benchmark_writes_json_and_markdown(tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "BENCHMARKS.md"
    r = streaming.run(["--quick", "--nets", "anchor", "--batches", "1", "--out", str(out), "--md", str(md),
                       "--no-progress", "--budget", "0.2"])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(r))
    for k in ("command", "environment", "load_avg_start", "load_avg_end", "groups", "targets", "method", "quick"):
        assert k in data
    assert len(data["load_avg_start"]) == 3
    assert set(data["groups"]) == {"anchor_hop1_b1", "anchor_hop2_b1"}
    for key, g in data["groups"].items():
        assert g["threads"] == 1 and g["batch"] == 1 and g["rounds"] >= 3
        for k in ("load_avg_before", "load_avg_after", "min_state", "unsupported", "mode", "unit"):
            assert k in g
        cs = g["contenders"]
        for name in ("recompute_eager", "thinkonce_eager", "ring_buffer"):
            assert name in cs, (key, name)
        for name, c in cs.items():
            assert c["min_us"] <= c["median_us"] <= c["max_us"]
            assert c["n"] == g["rounds"]
            for k in ("macs_per_hop", "state_bytes_per_stream", "note", "exact", "family"):
                assert k in c
            if c["family"] != "recompute":
                assert c["time_ratio"] > 0
        # MACs per hop: the stream and the floor do the same new work; recompute does the whole window
        assert cs["ring_buffer"]["macs_per_hop"] == cs["thinkonce_eager"]["macs_per_hop"]
        assert cs["recompute_eager"]["macs_per_hop"] > 50 * cs["thinkonce_eager"]["macs_per_hop"]
    assert any("ring buffer" in t["target"] for t in data["targets"])
    assert all(isinstance(t["met"], bool) for t in data["targets"])
    text = md.read_text()
    assert "## Targets" in text and "Load average" in text
    assert "python bench/streaming.py --nets anchor --batches 1 --quick" in text
    rb = data["groups"]["anchor_hop2_b1"]["contenders"]["ring_buffer"]
    from make_benchmarks_md import _us

    assert f"| ring_buffer | {_us(rb['median_us'])} |" in text  # tables are generated from the JSON
