"""StreamiNNC EEG seizure detection: train zero- and signal-padded nets, compare inference schemes.

    python experiments/seizure_eeg.py            # full (~10 min on 2 shared cores)
    python experiments/seizure_eeg.py --quick    # tiny data, 1 epoch (seconds)
    python experiments/seizure_eeg.py --data real [--quick]   # real recordings (experiments/seizure_real.py)

Data: simulated 18-channel bipolar scalp EEG at 256 Hz (``thinkonce.data.simulate_eeg``) with forced
seizure counts, scaled by 1/50 uV. The paper's network (``thinkonce.models.eeg_seizure``: 3 x [Conv1d k3
pad 1, BN, ReLU, MaxPool 4], head Conv1d k16) is trained twice with class-balanced sampling (half
seizure windows): once on plain windows (zero padding) and once as ``SignalPadded`` on windows
extended by real signal. Held-out recordings (other seeds) are run as normal windowed inference,
exact and stale-edge streams, the approximate baseline and a stream at a misaligned hop (288 =
256 + 64 // 2); see experiments/common.py. Writes results/seizure_eeg.json and .png.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from thinkonce.data import simulate_eeg  # noqa: E402
from thinkonce.models import eeg_seizure  # noqa: E402

FS, WINDOW, HOP = 256.0, 1024, 256
SCALE_UV = 50.0  # inputs in units of 50 uV: unit-order values for the first convolution


def simulate(duration_s: float, seed: int, seizures: int) -> common.Recording:
    r = simulate_eeg(duration_s, fs=FS, n_channels=18, seed=seed, seizures=seizures)
    return common.Recording(x=r.eeg / SCALE_UV, labels=r.labels, events=list(r.events), fs=FS, seed=seed)


SETUP = common.SeizureSetup(
    name="seizure_eeg",
    simulate=simulate,
    build_model=eeg_seizure,
    fs=FS,
    window=WINDOW,
    hop=HOP,
    paper={"nrmse_pct": 3.32, "mac_cut": 3.9},
    full=dict(train_recordings=10, train_s=900.0, eval_recordings=4, eval_s=900.0, seizures=3,
              train=dict(epochs=6, windows_per_epoch=3072, batch_size=32, lr=2e-3, start_stride=64),
              timing_hops=200, batched=(32, 40)),
    quick=dict(train_recordings=2, train_s=90.0, eval_recordings=1, eval_s=75.0, seizures=1,
               train=dict(epochs=1, windows_per_epoch=64, batch_size=16, lr=2e-3, start_stride=128),
               timing_hops=10, batched=(4, 2)),
    data_note=f"simulate_eeg(duration, fs=256, n_channels=18, seed, seizures=k) / {SCALE_UV} uV",
)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = common.seizure_arg_parser(SETUP, __doc__).parse_args(argv)
    if args.data == "real":
        import seizure_real

        args.out = args.out or common.RESULTS / "seizure_eeg_real.json"
        return seizure_real.run_eeg(args, argv)
    return common.run_seizure_experiment(SETUP, args, argv)


if __name__ == "__main__":
    main()
