"""RayStreamPool on a local Ray cluster: per-stream order, exactly-once retries, a shard killed mid-run
(0 lost, 0 duplicated, identical to one process), rebalancing onto a new shard, refused inputs that
change nothing, and the HTTP ingress. One Ray instance for the module (loopback, small object store)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ray = pytest.importorskip("ray", reason="the cluster layer needs the optional extra: pip install 'thinkonce[ray]'")

import thinkonce as to  # noqa: E402
from thinkonce.cluster import RayStreamPool, SequenceGapError, UnknownStreamError, slot_of  # noqa: E402
from thinkonce.errors import StreamInputError  # noqa: E402
from nets import assert_close  # noqa: E402

W, H = 64, 16
# one Ray cluster for the whole module, also under `pytest -n 2 --dist loadgroup` (the Makefile's form)
pytestmark = pytest.mark.xdist_group("ray_cluster")


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 4, 3, padding=1),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2),
    ).eval()


SLOTS = 8


@pytest.fixture(scope="module")
def local_stream():
    return to.stream(model(), window=W, hop=H)


@pytest.fixture(scope="module")
def cluster():
    torch.set_num_threads(1)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
                 _node_ip_address="127.0.0.1", configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def pool(cluster, local_stream, tmp_path_factory):
    """One 2-shard cluster for the module (actor start-up dominates the run time); tests use their own
    stream ids. The stream is converted once here and pickled to the shards."""
    p = RayStreamPool(local_stream, shards=2, slots=SLOTS, checkpoint_dir=tmp_path_factory.mktemp("cluster"),
                      checkpoint_every=13, name="test")
    yield p
    p.shutdown()


def chunkings(rng: random.Random, ids: list[str], n: int, pieces: int) -> dict[str, list[tuple[int, int]]]:
    out = {}
    for sid in ids:
        cuts = sorted(rng.sample(range(1, n), pieces - 1))
        b = [0, *cuts, n]
        out[sid] = [(b[j], b[j + 1]) for j in range(pieces)]
    return out


def drive(pool, signals, cuts, ids, *, rounds_between=None, on_round=None) -> dict[str, list]:
    """Submit chunk j of every stream in round j (one submit_many), read results every round; returns
    each stream's (quantum index, y) list."""
    got: dict[str, list] = {sid: [] for sid in ids}
    for j in range(len(cuts[ids[0]])):
        pool.submit_many([(sid, signals[i, :, cuts[sid][j][0]:cuts[sid][j][1]], j) for i, sid in enumerate(ids)])
        if on_round is not None:
            on_round(j)
        for sid, items in pool.results_many(ids, with_seq=True).items():
            got[sid].extend(items)
    for sid, items in pool.results_many(ids, with_seq=True).items():
        got[sid].extend(items)
    return got


def single_process(stream, signals, cuts, ids) -> dict[str, list]:
    """The same chunks, in the same rounds, through one local StreamPool."""
    pool = to.StreamPool(stream)
    for sid in ids:
        pool.add(sid)
    got: dict[str, list] = {sid: [] for sid in ids}
    for j in range(len(cuts[ids[0]])):
        for i, sid in enumerate(ids):
            pool.submit(sid, signals[i, :, cuts[sid][j][0]:cuts[sid][j][1]])
        pool.process()
        for sid in ids:
            got[sid].extend(pool.results(sid, with_seq=True))
    return got


def assert_same(got: dict, ref: dict, *, exact: bool) -> None:
    """Same quantum indices (nothing lost or duplicated) and values: bit for bit with ``exact`` (same batch
    composition), else to float rounding (batched kernels may round differently for other batch sizes)."""
    for sid in ref:
        assert [q for q, _ in got[sid]] == [q for q, _ in ref[sid]], f"{sid}: lost or duplicated outputs"
        if ref[sid]:
            a, b = torch.cat([y for _, y in got[sid]]), torch.cat([y for _, y in ref[sid]])
            if exact:
                assert torch.equal(a, b), f"{sid}: values differ from the uninterrupted run"
            assert_close(a, b)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), pieces=st.integers(3, 9))
def test_order_and_offline_equality(pool, local_stream, seed, pieces):
    """Random chunkings: each stream's outputs come back in quantum order, equal to the offline stream."""
    rng = random.Random(seed)
    ids = [f"s{seed}-{pieces}-{i}" for i in range(6)]
    n = 200
    x = torch.randn(len(ids), 1, n, generator=torch.Generator().manual_seed(seed))
    cuts = chunkings(rng, ids, n, pieces)
    for sid in ids:
        pool.add(sid)
    got = drive(pool, x, cuts, ids)
    for i, sid in enumerate(ids):
        qs = [q for q, _ in got[sid]]
        assert qs == list(range(len(qs)))
        ref = local_stream.run(x[i : i + 1], chunk=H)[0]
        assert_close(torch.cat([y for _, y in got[sid]]), ref)
        pool.evict(sid)


def test_retry_applied_once_and_gap_refused(pool):
    pool.add("a")
    x = torch.randn(1, 80)
    assert pool.submit("a", x[:, :40], 0) is True
    assert pool.submit("a", x[:, :40], 0) is False  # a retry: not applied again
    before = pool.info("a")
    with pytest.raises(SequenceGapError, match="resend from seq 1"):
        pool.submit("a", x[:, 40:], 2)
    assert pool.info("a") == before
    assert pool.submit("a", x[:, 40:], 1) is True
    assert pool.info("a")["position"] == 80
    first = pool.results("a", with_seq=True)
    assert [q for q, _ in first] == [0, 1, 2, 3, 4]  # 80 samples = 5 hops (windows from the 4th)
    assert pool.results("a") == []  # each output once
    pool.reset("a")
    assert pool.submit("a", x[:, :16], 2) is True  # numbering goes on across reset
    assert [q for q, _ in pool.results("a", with_seq=True)] == [5]
    assert pool.evict("a") == []


def test_bad_input_refused_state_untouched(pool):
    pool.add("b")
    pool.submit("b", torch.randn(1, 20), 0)
    before = pool.info("b")
    nan = torch.randn(1, 20)
    nan[0, 3] = float("nan")
    cases = [
        (torch.randn(2, 20), StreamInputError, "shaped"),
        (torch.randn(1, 20, dtype=torch.float64), StreamInputError, "dtype"),
        (nan, StreamInputError, "NaN"),
        ([0.0] * 20, StreamInputError, "torch.Tensor"),
    ]
    for chunk, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            pool.submit("b", chunk, 1)
        assert pool.info("b") == before
    with pytest.raises(UnknownStreamError, match="add it first"):
        pool.submit("nobody", torch.randn(1, 20), 0)
    with pytest.raises(StreamInputError, match="seq must be a non-negative int"):
        pool.submit("b", torch.randn(1, 20), 1.0)
    with pytest.raises(StreamInputError, match="already in the pool"):
        pool.add("b")
    assert pool.info("b") == before
    out = pool.submit_many([("b", torch.randn(1, 20), 1), ("b", torch.randn(2, 20), 2)], errors="return")
    assert out[0] is True and isinstance(out[1], StreamInputError)  # items are independent
    pool.evict("b")


def emulate(stream, signals, cuts, ids, root) -> dict[str, list]:
    """The cluster's computation in this process, never interrupted: one local Slot per hash slot, the
    same chunks per round, stepped at the same points (so the same batch composition, bit for bit)."""
    from thinkonce.cluster.slot import Slot

    slots: dict[int, Slot] = {}
    got: dict[str, list] = {sid: [] for sid in ids}
    for sid in ids:
        k = slot_of(sid, SLOTS)
        if k not in slots:
            slots[k] = Slot(stream, root / f"slot-{k}")
        slots[k].add(sid)
    for j in range(len(cuts[ids[0]])):
        touched = set()
        for i, sid in enumerate(ids):
            k = slot_of(sid, SLOTS)
            slots[k].submit(sid, signals[i, :, cuts[sid][j][0]:cuts[sid][j][1]], j)
            touched.add(k)
        for k in touched:
            slots[k].process()
        for sid in ids:
            got[sid].extend(slots[slot_of(sid, SLOTS)].take(sid))
    return got


@pytest.mark.parametrize("how", ["ray_kill", "os_exit"])
def test_shard_killed_mid_run_loses_and_duplicates_nothing(pool, local_stream, tmp_path, how):
    """A shard dies during the run (after checkpoints, with a journal since the last one; the second case
    kills the actor the first one restarted): Ray restarts it, it recovers, and every stream's outputs equal an uninterrupted run: bit for bit the
    same computation in one process, and to float rounding one local StreamPool."""
    rng = random.Random(7)
    ids = [f"k-{how}-{i}" for i in range(8)]
    n, pieces = 320, 12
    x = torch.randn(len(ids), 1, n, generator=torch.Generator().manual_seed(3))
    cuts = chunkings(rng, ids, n, pieces)
    for sid in ids:
        pool.add(sid)
    victim = pool.shard_of(ids[0])
    pids = []

    def kill(j: int) -> None:
        if j == (4 if how == "ray_kill" else 8):
            pids.append({s["name"]: s for s in pool.stats()["per_shard"]}[victim]["pid"])
            if how == "ray_kill":
                pool.kill_shard(victim)
            else:
                pool.handles[victim].crash.remote()

    got = drive(pool, x, cuts, ids, on_round=kill)
    after = {s["name"]: s for s in pool.stats()["per_shard"]}[victim]
    assert after["pid"] not in pids, "the shard was not restarted"
    assert_same(got, emulate(local_stream, x, cuts, ids, tmp_path), exact=True)
    assert_same(got, single_process(local_stream, x, cuts, ids), exact=False)
    for i, sid in enumerate(ids):
        assert_close(torch.cat([y for _, y in got[sid]]), local_stream.run(x[i : i + 1], chunk=H)[0])
        pool.evict(sid)


# ---------------------------------------------------------------------------------------------- HTTP
@pytest.fixture(scope="module")
def http(pool):
    pytest.importorskip("ray.serve", reason="the HTTP ingress needs ray[serve]")
    requests = pytest.importorskip("requests")
    import socket

    from ray import serve

    from thinkonce.cluster.http import serve_pool

    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = serve_pool(pool, host="127.0.0.1", port=port, max_chunk_samples=4096)
    yield url, requests.Session()
    serve.shutdown()


def post(http, sid, x, seq, **params):
    url, s = http
    body = x.numpy().astype(x.numpy().dtype.newbyteorder("<")).tobytes() if isinstance(x, torch.Tensor) else x
    q = {"seq": seq, **params} if seq is not None else params
    return s.post(f"{url}/streams/{sid}/chunks", params=q, data=body, timeout=30)


def test_http_bad_inputs_get_4xx_and_change_nothing(pool, http):
    url, s = http
    assert s.put(f"{url}/streams/h-bad", timeout=30).status_code == 201
    assert s.put(f"{url}/streams/h-bad", timeout=30).status_code == 409
    r0 = post(http, "h-bad", torch.randn(1, 24), 0)
    assert r0.status_code == 200 and r0.json()["applied"] is True, r0.text
    before = pool.info("h-bad")
    nan = torch.randn(1, 24)
    nan[0, 5] = float("nan")
    cases = [
        (post(http, "h-bad", torch.randn(2, 24), 1, frame="2"), 422, "shaped"),
        (post(http, "h-bad", torch.randn(1, 24, dtype=torch.float64), 1, dtype="float64"), 422, "dtype"),
        (post(http, "h-bad", nan, 1), 422, "NaN"),
        (post(http, "nobody", torch.randn(1, 24), 0), 404, "unknown stream"),
        (post(http, "h-bad", torch.randn(1, 24), 3), 409, "resend from seq 1"),
        (post(http, "h-bad", torch.randn(1, 4097), 1), 413, "limit"),
        (post(http, "h-bad", torch.randn(1, 24), None), 400, "seq"),
        (post(http, "h-bad", torch.randn(1, 24), "x"), 400, "seq"),
        (post(http, "h-bad", b"\x00" * 7, 1), 400, "whole number of frames"),
        (post(http, "h-bad", torch.randn(1, 24), 1, dtype="complex"), 400, "unknown dtype"),
    ]
    for r, status, reason in cases:
        assert r.status_code == status, (r.status_code, r.text)
        assert reason in r.json()["error"], r.json()
        assert pool.info("h-bad") == before, f"a refused request ({status}) changed the stream"
    assert s.get(f"{url}/streams/nobody/results", timeout=30).status_code == 404
    assert s.get(f"{url}/streams/h-bad/results", params={"after": "z"}, timeout=30).status_code == 400


def test_http_load_loopback_exactly_once(pool, http, local_stream):
    """A bounded loopback load: 12 streams x 10 chunks from 4 client threads (each stream's chunks in
    order, some sent twice as retries); every stream's outputs equal the offline stream, each once."""
    import concurrent.futures as cf
    import time

    url, s = http
    ids = [f"h-load-{i}" for i in range(12)]
    n, pieces = 160, 10
    x = torch.randn(len(ids), 1, n, generator=torch.Generator().manual_seed(9))
    cuts = chunkings(random.Random(2), ids, n, pieces)
    for sid in ids:
        assert s.put(f"{url}/streams/{sid}", timeout=30).status_code == 201
    deadline = time.monotonic() + 45

    def send(i: int) -> list[int]:
        sid, codes = ids[i], []
        for j, (a, b) in enumerate(cuts[sid]):
            for _ in range(2 if j % 3 == 0 else 1):  # every third chunk is retried
                assert time.monotonic() < deadline, "load test over its time bound"
                codes.append(post(http, sid, x[i, :, a:b], j).status_code)
        return codes

    with cf.ThreadPoolExecutor(4) as ex:
        codes = [c for cs in ex.map(send, range(len(ids))) for c in cs]
    assert codes == [200] * len(codes)
    for i, sid in enumerate(ids):
        got, last = [], -1
        for _ in range(2):  # reading twice with the cursor returns nothing new
            r = s.get(f"{url}/streams/{sid}/results", params={"after": last}, timeout=30).json()
            got += [it for it in r["results"] if it["seq"] > last]
            last = r["last"]
        assert [it["seq"] for it in got] == list(range(pieces and len(got))) and len(got) == n // H
        y = torch.cat([torch.tensor(it["data"]).reshape(it["shape"]) for it in got])
        assert_close(y, local_stream.run(x[i : i + 1], chunk=H)[0])


def test_add_shard_moves_streams_with_their_state(pool, http, local_stream):
    """The cluster grows from 2 shards to 3 mid-run (last test of the module: it changes the shared
    cluster): the moved slots' streams continue from their state, through the HTTP ingress too."""
    rng = random.Random(11)
    ids = [f"r{i}" for i in range(10)]
    n, pieces = 240, 8
    x = torch.randn(len(ids), 1, n, generator=torch.Generator().manual_seed(5))
    cuts = chunkings(rng, ids, n, pieces)
    moved = {}
    for sid in ids:
        pool.add(sid)
    before = {sid: pool.shard_of(sid) for sid in ids}

    def grow(j: int) -> None:
        if j == 3:
            moved.update(pool.add_shards(1))

    got = drive(pool, x, cuts, ids, on_round=grow)
    assert moved["moved_slots"], "a new shard must take some slots"
    assert any(pool.shard_of(s) != before[s] for s in ids), "no stream moved: pick more streams"
    assert_same(got, single_process(local_stream, x, cuts, ids), exact=False)
    assert set(ids) <= set(pool.ids())
    assert len(pool.shard_names) == 3
    url, s = http  # the ingress still routes by the old ring: the old owner says "moved", it re-reads it
    sid = next(s_ for s_ in ids if pool.shard_of(s_) != before[s_])
    r = s.get(f"{url}/streams/{sid}/results", params={"after": got[sid][-1][0]}, timeout=30)
    assert r.status_code == 200 and r.json()["results"] == [], r.text
