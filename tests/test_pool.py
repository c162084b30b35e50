"""StreamPool: many independent streams, batched steps, in-order results, isolation, thread safety,
atomic checkpoints with no lost or duplicated output, and input errors that leave the pool unchanged."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import thinkonce as to
from thinkonce.pool import CHECKPOINT_FILE, UnknownStreamError

W, H, Q_CONT = 64, 16, 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny batches: intra-op threads only add contention on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def window_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 4, 3, padding=1),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2),
    ).eval()


def continuous_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(  # the last conv's stride exceeds its span: a phase counter the shapes do not show
        nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 3, 3, padding=1),
        nn.Conv1d(3, 3, 1, stride=3),
    ).eval()


_STREAMS: dict[str, to.Stream] = {}


def get_stream(mode: str) -> to.Stream:
    if mode not in _STREAMS:
        _STREAMS[mode] = (
            to.stream(window_model(), window=W, hop=H) if mode == "window" else to.stream(continuous_model())
        )
    return _STREAMS[mode]


def make_pool(mode: str, **kw) -> to.StreamPool:
    s = get_stream(mode)
    return to.StreamPool(s, quantum=None if mode == "window" else Q_CONT, **kw)


def signal_for(mode: str, seed: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1 if mode == "window" else 2, n, generator=g)


def joined(mode: str, items: list[torch.Tensor]) -> torch.Tensor:
    if mode == "window":
        return torch.cat(items, dim=0) if items else torch.zeros(0, 2)
    return torch.cat(items, dim=-1) if items else torch.zeros(3, 0)


def reference(mode: str, sig: torch.Tensor, quanta: int) -> torch.Tensor:
    """The stream run alone on the samples the pool consumed (continuous: a prefix of run's output)."""
    s = get_stream(mode)
    q = H if mode == "window" else Q_CONT
    if quanta == 0:
        return joined(mode, [])
    return s.run(sig[:, : quanta * q].unsqueeze(0), chunk=q)[0]


def assert_matches(mode: str, items: list[torch.Tensor], sig: torch.Tensor, quanta: int) -> None:
    assert len(items) == quanta
    got, ref = joined(mode, items), reference(mode, sig, quanta)
    if mode == "continuous":
        ref = ref[..., : got.shape[-1]]  # run() adds the flushed tail
        assert got.shape[-1] >= ref.shape[-1] - 2 * get_stream(mode).delay
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ ordering, batching


def test_one_item_per_quantum_in_order_over_several_rounds() -> None:
    pool = make_pool("window")
    pool.add("a")
    sig = signal_for("window", 0, 7 * H + 5)
    pool.submit("a", sig[:, :50])
    assert pool.process() == 3  # 50 samples: 3 full hops, 2 samples stay pending
    pool.submit("a", sig[:, 50:])
    assert pool.info("a") == {"seq": 3, "position": 7 * H + 5, "pending": 4 * H + 5, "queued": 3}
    assert pool.process() == 4  # four hops of one stream: four rounds, in order
    items = pool.results("a", with_seq=True)
    assert [q for q, _ in items] == list(range(7))
    # W = 4 H: the first three hops complete no window, then one window per hop
    assert [y.shape[0] for _, y in items] == [0, 0, 0, 1, 1, 1, 1]
    assert_matches("window", [y for _, y in items], sig, 7)
    assert pool.results("a") == []
    assert pool.info("a") == {"seq": 7, "position": 7 * H + 5, "pending": 5, "queued": 0}


def test_ready_streams_share_one_batched_step() -> None:
    pool = make_pool("window")
    sigs = {f"s{i}": signal_for("window", i, 3 * H) for i in range(10)}
    for k in sigs:
        pool.add(k)
    for r in range(3):
        for k, sig in sigs.items():
            pool.submit(k, sig[:, r * H : (r + 1) * H])
        assert pool.process() == 10
    st_ = pool.stats()
    assert st_["batches"] == 3 and st_["mean_batch"] == 10 and st_["steps"] == 30
    pool.submit("s0", sigs["s0"][:, :H])
    pool.submit("s1", sigs["s1"][:, :H])
    assert pool.process(max_batch=1) == 2 and pool.stats()["batches"] == 5
    s = pool.stats()
    for key in ("p50_step_us", "p99_step_us", "p50_batch_us", "p99_batch_us"):
        assert s[key] is not None and s[key] > 0
    assert s["streams"] == 10 and s["queued_results"] == 32


@pytest.mark.parametrize("mode", ["window", "continuous"])
def test_streams_at_different_phases_are_never_mixed(mode) -> None:
    """Rows of one step share the sample clock's phase (window emission) and the layers' phase counters:
    streams that reached different points are stepped in separate groups."""
    pool = make_pool(mode)
    q = pool.quantum
    starts = [0, 1, 2, 3, 5, 9]  # quanta each stream consumed before they all become ready together
    sigs = {f"s{i}": signal_for(mode, 40 + i, 12 * q) for i in range(len(starts))}
    for (k, sig), n0 in zip(sigs.items(), starts):
        pool.add(k)
        pool.submit(k, sig[:, : n0 * q])
        pool.process()
    for k, sig in sigs.items():
        pool.submit(k, sig[:, pool.position(k) :])
    pool.process()
    for k, sig in sigs.items():
        assert_matches(mode, pool.results(k), sig, 12)


# ------------------------------------------------------------------ isolation (hypothesis)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 5), st.integers(0, 48)),
        st.tuples(st.just("process"), st.integers(1, 6), st.just(0)),
        st.tuples(st.just("pop"), st.integers(0, 5), st.just(0)),
    ),
    min_size=1, max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["window", "continuous"]), n_streams=st.integers(1, 6), script=ops, seed=st.integers(0, 999))
def test_each_stream_equals_running_it_alone(mode, n_streams, script, seed) -> None:
    pool = make_pool(mode)
    q = pool.quantum
    n = 160
    sigs = [signal_for(mode, seed + i, n) for i in range(n_streams)]
    pos = [0] * n_streams
    got: list[list] = [[] for _ in range(n_streams)]
    for i in range(n_streams):
        pool.add(f"id{i}")
    for op, a, b in script:
        i = a % n_streams
        if op == "submit":
            k = min(b, n - pos[i])
            pool.submit(f"id{i}", sigs[i][:, pos[i] : pos[i] + k])
            pos[i] += k
        elif op == "process":
            pool.process(max_batch=a)
        else:
            got[i] += pool.results(f"id{i}", with_seq=True)
    pool.process()
    for i in range(n_streams):
        got[i] += pool.results(f"id{i}", with_seq=True)
        assert [s for s, _ in got[i]] == list(range(pos[i] // q))
        assert_matches(mode, [y for _, y in got[i]], sigs[i], pos[i] // q)
        assert pool.info(f"id{i}")["pending"] == pos[i] % q


# ------------------------------------------------------------------ evict / reset


def test_evict_and_reset() -> None:
    pool = make_pool("window")
    for k in "abc":
        pool.add(k)
    x = signal_for("window", 1, 6 * H)
    for k in "abc":
        pool.submit(k, x[:, : 5 * H + 3])
    pool.process()
    left = pool.evict("b")
    assert len(left) == 5 and "b" not in pool and len(pool) == 2 and pool.ids() == ["a", "c"]
    with pytest.raises(UnknownStreamError):
        pool.submit("b", x[:, :H])
    pool.add("b")  # a new stream under the old name starts fresh
    pool.reset("c")  # fresh state, pending dropped, undelivered results kept, indices keep counting
    assert pool.info("c") == {"seq": 5, "position": 0, "pending": 0, "queued": 5}
    y = signal_for("window", 2, 5 * H)
    for k in "bc":
        pool.submit(k, y)
    pool.process()
    assert_matches("window", pool.results("b"), y, 5)
    items = pool.results("c", with_seq=True)
    assert [s for s, _ in items] == list(range(10))
    assert_matches("window", [v for _, v in items[:5]], x, 5)
    assert_matches("window", [v for _, v in items[5:]], y, 5)
    st_ = pool.state("c")
    fresh = get_stream("window").init_state(1)
    assert st_.keys() == fresh.keys()


def test_evict_or_reset_during_a_step_drops_that_result() -> None:
    pool = make_pool("window")
    for k in "abc":
        pool.add(k)
    x = signal_for("window", 3, 2 * H)
    for k in "abc":
        pool.submit(k, x[:, :H])
    s = pool.stream
    real_step = s.step
    fired = []

    def step(xb, state):  # runs outside the pool's lock, like a long batched step
        if not fired:
            fired.append(1)
            pool.evict("b")
            pool.reset("c")
            pool.submit("c", x[:, H:])  # the new generation's input: not stepped in the old round
        return real_step(xb, state)

    s.step = step  # type: ignore[method-assign]
    try:
        pool.process()
    finally:
        del s.step
    assert "b" not in pool
    assert pool.info("a")["seq"] == 1 and len(pool.results("a")) == 1
    c = pool.results("c", with_seq=True)  # only the post-reset quantum (the dropped one used no index)
    assert [q for q, _ in c] == [0]
    assert_matches("window", [c[0][1]], x[:, H:], 1)


# ------------------------------------------------------------------ thread safety


def test_concurrent_submitters_match_sequential() -> None:
    mode = "window"
    pool = make_pool(mode)
    n_threads, per_thread, n = 4, 4, 12 * H
    ids = [f"t{t}s{j}" for t in range(n_threads) for j in range(per_thread)]
    sigs = {k: signal_for(mode, 100 + i, n) for i, k in enumerate(ids)}
    for k in ids:
        pool.add(k)
    got = {k: [] for k in ids}
    done = threading.Event()
    errors: list[BaseException] = []

    def submitter(t: int) -> None:
        try:
            rng = random.Random(t)
            mine = [k for k in ids if k.startswith(f"t{t}s")]
            pos = dict.fromkeys(mine, 0)
            while any(p < n for p in pos.values()):
                k = rng.choice([k for k in mine if pos[k] < n])
                c = min(rng.randint(0, 37), n - pos[k])
                pool.submit(k, sigs[k][:, pos[k] : pos[k] + c])
                pos[k] += c
                if rng.random() < 0.2:
                    time.sleep(0.0005)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def processor() -> None:
        try:
            while not done.is_set():
                pool.process(max_batch=7)
                for k in ids:
                    got[k] += pool.results(k, with_seq=True)
                time.sleep(0.0002)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(t,)) for t in range(n_threads)]
    proc = threading.Thread(target=processor)
    proc.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    done.set()
    proc.join()
    assert not errors, errors
    pool.process()
    for k in ids:
        got[k] += pool.results(k, with_seq=True)
        assert [q for q, _ in got[k]] == list(range(n // H))
        assert_matches(mode, [y for _, y in got[k]], sigs[k], n // H)


# ------------------------------------------------------------------ checkpoint / restore


@pytest.mark.parametrize("mode", ["window", "continuous"])
def test_checkpoint_restore_loses_and_duplicates_nothing(tmp_path, mode) -> None:
    rng = random.Random(7)
    pool = make_pool(mode, checkpoint_dir=tmp_path)
    q = pool.quantum
    n = 14 * q
    ids = [f"s{i}" for i in range(6)]
    sigs = {k: signal_for(mode, 200 + i, n) for i, k in enumerate(ids)}
    pos = dict.fromkeys(ids, 0)
    delivered: dict[str, list] = {k: [] for k in ids}

    def feed(p: to.StreamPool, until: int) -> None:
        for _ in range(40):
            k = rng.choice(ids)
            c = min(rng.randint(0, 2 * q + 3), until - pos[k])
            p.submit(k, sigs[k][:, pos[k] : pos[k] + c])
            pos[k] += c
            if rng.random() < 0.3:
                p.process(max_batch=rng.randint(1, 6))

    for k in ids:
        pool.add(k)
    feed(pool, 7 * q)
    pool.process(max_batch=2)
    for k in ids[:3]:  # some outputs delivered before the checkpoint, others still queued
        delivered[k] += pool.results(k, with_seq=True)
    pool.checkpoint()
    at_ckpt = {k: pool.info(k) for k in ids}
    steps_at_ckpt = pool.stats()["steps"]
    # the run goes on: more input, more output (some delivered), then the process dies
    feed(pool, n)
    pool.process()
    after = {k: dict(pool.results(k, with_seq=True)) for k in ids}
    del pool

    pool2 = to.StreamPool.restore(get_stream(mode), tmp_path)
    assert pool2.ids() == ids and pool2.stats()["steps"] == steps_at_ckpt
    for k in ids:
        assert pool2.info(k) == at_ckpt[k]
        p = pool2.position(k)
        pool2.submit(k, sigs[k][:, p:])  # the producer resends from the position the checkpoint holds
    pool2.process()
    for k in ids:
        rest = pool2.results(k, with_seq=True)
        seqs = [s for s, _ in delivered[k]] + [s for s, _ in rest]
        assert seqs == list(range(n // q)), k  # every quantum index exactly once
        for s_, y in rest:  # what the dead process produced after the checkpoint comes out the same
            if s_ in after[k]:
                torch.testing.assert_close(y, after[k][s_], rtol=1e-5, atol=1e-5)
        assert_matches(mode, [y for _, y in delivered[k] + rest], sigs[k], n // q)


def test_restore_refuses_another_stream(tmp_path) -> None:
    pool = make_pool("window", checkpoint_dir=tmp_path)
    pool.add("a")
    pool.checkpoint()
    other = to.stream(window_model(), window=W, hop=2 * H)
    with pytest.raises(to.ThinkonceError, match="hop"):
        to.StreamPool.restore(other, tmp_path)
    with pytest.raises(FileNotFoundError):
        to.StreamPool.restore(get_stream("window"), tmp_path / "nothing")
    with pytest.raises(to.ThinkonceError, match="checkpoint_dir"):
        make_pool("window").checkpoint()


@pytest.mark.parametrize("where", ["while_writing", "before_rename"])
def test_interrupted_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, where) -> None:
    import thinkonce.pool as pool_mod

    pool = make_pool("window", checkpoint_dir=tmp_path)
    x = signal_for("window", 5, 10 * H)
    pool.add("a")
    pool.submit("a", x[:, : 5 * H + 1])
    pool.process()
    pool.checkpoint()
    first = (tmp_path / CHECKPOINT_FILE).read_bytes()
    pool.submit("a", x[:, 5 * H + 1 :])
    pool.process()

    class Killed(Exception):
        pass

    if where == "while_writing":
        def broken(tensors, path, metadata=None):
            Path(path).write_bytes(b"\x00" * 37)  # half a file, then the process "dies"
            raise Killed
        monkeypatch.setattr(pool_mod, "save_file", broken)
    else:
        def broken_replace(src, dst):
            raise Killed
        monkeypatch.setattr(pool_mod.os, "replace", broken_replace)
    with pytest.raises(Killed):
        pool.checkpoint()
    monkeypatch.undo()
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]
    back = to.StreamPool.restore(get_stream("window"), tmp_path)
    assert back.info("a") == {"seq": 5, "position": 5 * H + 1, "pending": 1, "queued": 5}
    back.submit("a", x[:, 5 * H + 1 :])
    back.process()
    assert_matches("window", back.results("a"), x, 10)


def test_killed_process_leaves_a_complete_checkpoint(tmp_path) -> None:
    """SIGKILL a process that checkpoints in a loop; the file on disk always restores."""
    script = textwrap.dedent(f"""
        import sys, torch, torch.nn as nn, thinkonce as to
        torch.set_num_threads(1)
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 4, 3, padding=1),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
        pool = to.StreamPool(to.stream(m, window={W}, hop={H}), checkpoint_dir=sys.argv[1])
        for i in range(300):
            pool.add(f"s{{i}}")
        i = 0
        while True:
            for j in range(300):
                pool.submit(f"s{{j}}", torch.randn(1, 7))
            pool.process()
            pool.checkpoint()
            i += 1
            print(i, flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(to.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        for _ in range(2):  # at least two checkpoints done, then kill at a random moment
            assert proc.stdout.readline(), "the checkpointing process died"
        time.sleep(random.Random(0).uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    back = to.StreamPool.restore(get_stream("window"), tmp_path)
    assert len(back) == 300
    positions = {back.position(k) for k in back.ids()}
    assert len(positions) == 1 and positions.pop() % 7 == 0
    assert not list(tmp_path.glob("*.tmp-*"))


# ------------------------------------------------------------------ callback


def test_callback_receives_outputs_in_order_and_a_failing_callback_loses_nothing(tmp_path) -> None:
    seen: list[tuple[str, int]] = []
    fail_at = {"n": 5}

    def on_output(sid, y, seq):
        if len(seen) == fail_at["n"]:
            fail_at["n"] = -1
            raise RuntimeError("consumer down")
        seen.append((sid, seq))

    pool = make_pool("window", on_output=on_output, callback_seq=True, checkpoint_dir=tmp_path)
    for k in "ab":
        pool.add(k)
    x = signal_for("window", 9, 6 * H)
    for k in "ab":
        pool.submit(k, x)
    with pytest.raises(RuntimeError, match="consumer down"):
        pool.process()
    queued = {k: [q for q, _ in pool.results(k, with_seq=True)] for k in "ab"}
    pool.process()  # the quanta not stepped yet are still pending
    for k in "ab":
        got = sorted([q for s_, q in seen if s_ == k] + queued[k])
        assert got == list(range(6)), (k, got)
        assert [q for s_, q in seen if s_ == k] == sorted(q for s_, q in seen if s_ == k)

    def reenter(sid, y):
        pool3.process()

    pool3 = make_pool("window", on_output=reenter)
    pool3.add("a")
    pool3.submit("a", x[:, :H])
    with pytest.raises(RuntimeError, match="callback"):
        pool3.process()


# ------------------------------------------------------------------ bad input


def _snapshot(pool: to.StreamPool) -> tuple:
    return pool.ids(), {k: pool.info(k) for k in pool.ids()}, pool.stats()["steps"]


def test_bad_input_raises_clearly_and_changes_nothing() -> None:
    pool = make_pool("window")
    pool.add("a")
    x = signal_for("window", 11, 3 * H)
    pool.submit("a", x[:, :20])
    before = _snapshot(pool)
    nan = x[:, :H].clone()
    nan[0, 3] = float("nan")
    inf = x[:, :H].clone()
    inf[0, 0] = float("inf")
    cases = [
        (lambda: pool.submit("zz", x[:, :H]), UnknownStreamError, "unknown stream 'zz'"),
        (lambda: pool.submit("a", torch.randn(2, H)), to.StreamInputError, "shaped"),
        (lambda: pool.submit("a", torch.randn(1, 1, H)), to.StreamInputError, "no batch dim"),
        (lambda: pool.submit("a", x[:, :H].double()), to.StreamInputError, "dtype"),
        (lambda: pool.submit("a", nan), to.StreamInputError, "NaN"),
        (lambda: pool.submit("a", inf), to.StreamInputError, "NaN or Inf"),
        (lambda: pool.submit("a", [0.0] * H), to.StreamInputError, "torch.Tensor"),
        (lambda: pool.add("a"), to.StreamInputError, "already"),
        (lambda: pool.results("zz"), KeyError, "unknown"),
        (lambda: pool.evict("zz"), KeyError, "unknown"),
        (lambda: pool.reset("zz"), KeyError, "unknown"),
        (lambda: pool.process(max_batch=0), ValueError, "max_batch"),
    ]
    for call, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            call()
        assert _snapshot(pool) == before
    pool.submit("a", x[:, 20:])
    pool.process()
    assert_matches("window", pool.results("a"), x, 3)


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="quantum"):
        to.StreamPool(get_stream("continuous"))
    with pytest.raises(ValueError, match="multiple of the hop"):
        to.StreamPool(get_stream("window"), quantum=H + 1)
    with pytest.raises(TypeError):
        to.StreamPool(window_model())  # type: ignore[arg-type]
    pool = to.StreamPool(get_stream("window"), quantum=2 * H)  # two hops per stream-step: two windows at once
    pool.add("a")
    x = signal_for("window", 12, 8 * H)
    pool.submit("a", x)
    assert pool.process() == 4
    items = pool.results("a")
    assert [y.shape[0] for y in items] == [0, 1, 2, 2]
    assert_matches_windows = torch.cat(items)
    torch.testing.assert_close(assert_matches_windows, reference("window", x, 8), rtol=1e-5, atol=1e-5)
