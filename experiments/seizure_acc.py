"""StreamiNNC accelerometer seizure detection: zero- vs signal-padded nets under every scheme.

    python experiments/seizure_acc.py            # full (~10 min on 2 shared cores)
    python experiments/seizure_acc.py --quick    # tiny data, 1 epoch (seconds)
    python experiments/seizure_acc.py --data real [--quick]   # real recordings (experiments/seizure_real.py)

Data: simulated wrist accelerometer (x, y, z, magnitude in g) at 32 Hz with tonic-clonic seizures
(``thinkonce.data.simulate_acc``, forced seizure counts). The paper's network
(``thinkonce.models.acc_seizure``: 6 x [Conv1d k3 'same', BN, ReLU], 8 -> 256 filters, no pooling,
global average pool, dense head) is trained twice with class-balanced sampling: on plain windows
(zero padding) and as ``SignalPadded`` on extended windows. Held-out recordings (other seeds) are
run as normal windowed inference, exact and stale-edge streams and the approximate baseline
(experiments/common.py). No pooling means every hop is aligned: there is no misaligned scheme.
Writes results/seizure_acc.json and .png.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from thinkonce.data import simulate_acc  # noqa: E402
from thinkonce.models import acc_seizure  # noqa: E402

FS, WINDOW, HOP = 32.0, 960, 160


def simulate(duration_s: float, seed: int, seizures: int) -> common.Recording:
    r = simulate_acc(duration_s, fs=FS, seed=seed, seizures=seizures)
    return common.Recording(x=r.acc, labels=r.labels, events=list(r.events), fs=FS, seed=seed)


SETUP = common.SeizureSetup(
    name="seizure_acc",
    simulate=simulate,
    build_model=acc_seizure,
    fs=FS,
    window=WINDOW,
    hop=HOP,
    paper={"nrmse_pct": 3.55, "mac_cut": 6.0},
    full=dict(train_recordings=8, train_s=3600.0, eval_recordings=3, eval_s=3600.0, seizures=4,
              train=dict(epochs=4, windows_per_epoch=2048, batch_size=32, lr=2e-3, start_stride=32),
              timing_hops=150, batched=(32, 40)),
    quick=dict(train_recordings=2, train_s=240.0, eval_recordings=1, eval_s=180.0, seizures=1,
               train=dict(epochs=1, windows_per_epoch=32, batch_size=16, lr=2e-3, start_stride=64),
               timing_hops=8, batched=(4, 2)),
    data_note="simulate_acc(duration, fs=32, seed, seizures=k), channels x, y, z, |a| in g",
)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = common.seizure_arg_parser(SETUP, __doc__).parse_args(argv)
    if args.data == "real":
        import seizure_real

        args.out = args.out or common.RESULTS / "seizure_acc_real.json"
        return seizure_real.run_acc(args, argv)
    return common.run_seizure_experiment(SETUP, args, argv)


if __name__ == "__main__":
    main()
