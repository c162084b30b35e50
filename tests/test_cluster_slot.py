"""The Ray-free parts of thinkonce.cluster: consistent hashing, the journal's torn-tail rule, and a Slot
(durable, idempotent StreamPool) recovering from every crash point of its checkpoint."""

from __future__ import annotations

import random
import shutil

import pytest
import torch
import torch.nn as nn

import thinkonce as to
from thinkonce.cluster.hashing import HashRing, slot_of
from thinkonce.cluster.journal import SUBMIT, Journal, read_journal
from thinkonce.cluster.slot import CURRENT, Slot
from nets import assert_close

W, H = 64, 16


@pytest.fixture(scope="module")
def stream():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 4, 3, padding=1),
                      nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    return to.stream(m, window=W, hop=H)


def test_slots_are_stable_and_adding_a_shard_moves_few():
    ids = [f"dev-{i}" for i in range(2000)]
    assert [slot_of(s, 64) for s in ids] == [slot_of(s, 64) for s in ids]
    counts = [0] * 64
    for s in ids:
        counts[slot_of(s, 64)] += 1
    assert min(counts) > 0  # spread over every slot
    old, new = HashRing(["a", "b", "c"]).assignment(256), HashRing(["a", "b", "c", "d"]).assignment(256)
    moved = [k for k in old if old[k] != new[k]]
    assert all(new[k] == "d" for k in moved), "only slots the new shard takes may move"
    assert 0.1 < len(moved) / 256 < 0.45  # about 1/4, never a reshuffle
    with pytest.raises(ValueError, match="unique"):
        HashRing(["a", "a"])


def test_journal_drops_a_torn_tail(tmp_path):
    j = Journal(tmp_path / "j")
    for i in range(3):
        j.append(SUBMIT, "s", i, bytes([i]) * 8)
    j.close()
    raw = (tmp_path / "j").read_bytes()
    for cut in range(1, 10):  # a write interrupted anywhere in the last record
        (tmp_path / "t").write_bytes(raw[:-cut])
        assert [r.seq for r in read_journal(tmp_path / "t")] == [0, 1]
    bad = bytearray(raw)
    bad[-6] ^= 0xFF  # a flipped payload byte of the last record
    (tmp_path / "c").write_bytes(bytes(bad))
    assert [r.seq for r in read_journal(tmp_path / "c")] == [0, 1]


def run(stream, root, x, cuts, ids, crash=None):
    """Submit round j (one chunk per stream), process, read; ``crash(j, slot)`` may return a replacement
    slot opened from the directory (the process died)."""
    slot = Slot(stream, root)
    for sid in ids:
        slot.add(sid)
    got = {sid: [] for sid in ids}
    for j in range(len(cuts[ids[0]])):
        for i, sid in enumerate(ids):
            a, b = cuts[sid][j]
            slot.submit(sid, x[i, :, a:b], j)
        slot.process()
        if j % 3 == 2:
            slot.checkpoint()
        for sid in ids:
            last = got[sid][-1][0] if got[sid] else None
            got[sid] += slot.results(sid, after=last)
        if crash is not None:
            slot = crash(j, slot) or slot
    for sid in ids:
        last = got[sid][-1][0] if got[sid] else None
        got[sid] += slot.results(sid, after=last)
    return got


@pytest.mark.parametrize("point", ["after_ops", "ckpt_uncommitted", "ckpt_committed_journal_torn"])
def test_slot_recovers_from_each_crash_point(stream, tmp_path, point):
    rng = random.Random(1)
    ids = [f"s{i}" for i in range(4)]
    n = 320
    x = torch.randn(len(ids), 1, n, generator=torch.Generator().manual_seed(2))
    cuts = {}
    for sid in ids:
        b = [0, *sorted(rng.sample(range(1, n), 9)), n]
        cuts[sid] = [(b[j], b[j + 1]) for j in range(10)]
    ref = run(stream, tmp_path / "ref", x, cuts, ids)

    def crash(j, slot):
        if j not in (4, 7):
            return None
        d = slot.dir
        slot.close()
        if point == "ckpt_uncommitted":  # died inside checkpoint(): files of epoch k+1 written, CURRENT not
            nxt = slot.epoch + 1
            shutil.copytree(d / f"ckpt-{slot.epoch}" if slot.epoch else d, d / f"ckpt-{nxt}", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("slot-*"))
            (d / f"journal-{nxt}").write_bytes(b"garbage")
        elif point == "ckpt_committed_journal_torn":  # half a record at the journal's end
            with open(d / f"journal-{slot.epoch}", "ab") as f:
                f.write(b"S\x01\x00")
        back = Slot(stream, d)
        for i, sid in enumerate(ids):  # the producer retries the last round: all dropped as retries
            a, b = cuts[sid][j]
            assert back.submit(sid, x[i, :, a:b], j) is False
        return back

    got = run(stream, tmp_path / "crash", x, cuts, ids, crash=crash)
    assert (tmp_path / "crash" / CURRENT).exists()
    for i, sid in enumerate(ids):
        assert [q for q, _ in got[sid]] == [q for q, _ in ref[sid]] == list(range(len(ref[sid])))
        a, b = torch.cat([y for _, y in got[sid]]), torch.cat([y for _, y in ref[sid]])
        assert torch.equal(a, b)
        assert_close(a, stream.run(x[i : i + 1], chunk=H)[0])


def test_cluster_benchmark_section_comes_from_the_json():
    """BENCHMARKS.md's cluster section and target are rendered from results/bench_cluster.json."""
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    path = root / "results" / "bench_cluster.json"
    if not path.exists():
        pytest.skip("no results/bench_cluster.json (python bench/cluster.py writes it)")
    sys.path.insert(0, str(root / "bench"))
    from make_benchmarks_md import cluster_section, cluster_target

    c = json.loads(path.read_text())
    text = "\n".join(cluster_section(c))
    for r in c["runs"]:
        assert f"| {r['shards']} | {r['steady_processing_s_per_signal_s']:.3f} | {r['streams_in_realtime']:,} |" in text
    t = cluster_target(c)
    assert t["met"] == any(r["realtime_sustained"] and r["streams"] >= 10_000 for r in c["runs"])
    assert f"{c['recovery']['kill_to_answer_s']:.1f} s" in text
