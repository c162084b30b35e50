"""EXPERIMENTS.md sections of the SOI studies (speech separation, scene classification), from results/*.json.

Called by ``make_experiments_md.py``; also draws ``results/soi_speech.png`` (SI-SNRi loss vs MAC cut,
ours beside the paper's two reported points; time ratio vs MAC ratio). Paper: Stefanski et al.,
"Scattered Online Inference", NeurIPS 2024 (arXiv 2410.03813); numbers as in ../shared/DESIGN.md section 4.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

LICENCES = {
    "fsdd": "FSDD (real, 6 speakers; CC BY-SA 4.0)",
    "voxforge": "VoxForge mini (real, 30 sessions; GPL-2+)",
    "synth": "flite / festival / espeak-ng voices reading `fortunes` (synthesised; flite BSD-like, festival "
             "X11-style, espeak-ng GPL-3+, fortunes BSD)",
    "asterisk": "asterisk-core-sounds-{en,fr,it,ru}-wav (real prompt speakers, 8 kHz; CC BY-SA 3.0), evaluation only",
}
ASC_LICENCES = {"0ad-data": "CC BY-SA 3.0", "megaglest-data": "CC BY-SA 3.0", "wesnoth-1.16-data": "GPL-2+"}


def _f(v: Any, spec: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def _q(c: dict[str, Any], sub: str = "all") -> dict[str, float] | None:
    s = c["summary"]
    return s.get(f"si_snri:{sub}") or s.get(f"si_snri_polyphase:{sub}")


def _plot(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cf = data["configs"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, c in cf.items():
        if "mac_cut_pct" not in c or name == "STMC":
            continue
        q = _q(c)
        col = "tab:blue" if c.get("mode") == "pp" and c.get("rate", 8000) == 8000 else (
            "tab:orange" if c.get("mode") == "fp" else "tab:gray")
        ax[0].errorbar(c["mac_cut_pct"], c["si_snri_loss_pct"], yerr=None, fmt="o", color=col)
        ax[0].annotate(name.replace(" duplicate", ""), (c["mac_cut_pct"], c["si_snri_loss_pct"]), fontsize=6)
        ax[1].plot(c["mac_ratio_vs_stmc"], c.get("time_ratio_median_vs_stmc", c["time_ratio_vs_stmc"]), "o", color=col)
    p = data["paper"]
    ax[0].plot([p["pp_cut"]], [p["pp_loss"]], "*", ms=14, color="tab:blue", label="paper PP")
    ax[0].plot([p["fp_cut"]], [p["fp_loss"]], "*", ms=14, color="tab:orange", label="paper FP")
    ax[0].axhline(10, ls=":", color="k", lw=0.8)
    ax[0].axvline(50, ls=":", color="k", lw=0.8)
    ax[0].set_xlabel("MAC/s cut vs STMC stream (%)")
    ax[0].set_ylabel("SI-SNRi loss vs STMC (%)")
    ax[0].legend(fontsize=7)
    ax[0].set_title("quality vs complexity (blue PP, orange FP, grey resampling)", fontsize=9)
    ax[1].plot([0, 1.1], [0, 1.1], ":", color="k", lw=0.8)
    ax[1].set_xlabel("MAC/s ratio vs STMC")
    ax[1].set_ylabel("median time/s ratio vs STMC (under load)")
    ax[1].set_title("does time fall with the MAC cut?", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _rows(cf: dict[str, Any]) -> list[str]:
    out = []
    for name, c in cf.items():
        q, r, a = _q(c, "all"), _q(c, "real"), _q(c, "asterisk")

        def cell(v):
            return "n/a" if v is None else f"{v['mean']:.2f} +- {v['std']:.2f}"
        crit = c.get("critical_macs_peak")
        out.append(
            f"| {name} [n={len(c['runs'])}] | {cell(q)} | {cell(r)} | {cell(a)} | {_f(-c.get('si_snri_loss_pct', math.nan), '+.1f')} % | "
            f"{_f(c.get('mmac_per_s'))} | {_f(c.get('mac_cut_pct'), '.1f')} % | {c.get('macs_peak', 'n/a')} | "
            f"{crit if crit is not None else ''} | {_f(c.get('us_mean'), '.0f')} / {_f(c.get('us_median'), '.0f')} | "
            f"{_f(c.get('time_ratio_vs_stmc'))} / {_f(c.get('time_ratio_median_vs_stmc'))} | "
            f"{_f(c.get('time_over_mac_ratio'))} / {_f(c.get('time_median_over_mac_ratio'))} | "
            f"{_f(c.get('stream_vs_model_max_abs'), '.1e')} |")
    return out


HEADER = ["| configuration | SI-SNRi all (dB) | real | asterisk | SI-SNRi change vs STMC | MMAC/s | MAC cut | "
          "peak MACs/step | FP critical peak | time/step mean / median (us) | time ratio (mean / median) | "
          "time ratio / MAC ratio (mean / median) | "
          "stream = model (max abs) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]


def speech_section(results: Path) -> tuple[list[str], list[str]]:
    path = results / "soi_speech.json"
    title = "## SOI: two-speaker separation (causal U-Net, 8 kHz STFT frames)"
    if not path.is_file():
        return [title, "", "`soi_speech.json` is missing: run `python experiments/soi_speech.py`.", ""], \
            ["- SOI speech separation: not run."]
    d = json.loads(path.read_text())
    cf = d["configs"]
    body = [title, ""]
    if d.get("quick"):
        body += ["**Quick (smoke-test) run: numbers not meaningful.**", ""]
    body += [
        "Reproduce: `make soi-data` (apt packages), then `python experiments/soi_speech.py --seeds 0 --steps "
        f"{d['steps']} --out results/soi_speech_seed0.json` (every configuration, with stream costs), further seeds "
        "in parallel processes (`--seeds 1 --max-priority 2 --no-costs`, `--seeds 2 --max-priority 1 --no-costs`), "
        "joined by `--merge results/soi_speech_seed*.json --out results/soi_speech.json`, and "
        "`python experiments/soi_speech.py --fp-latency results/soi_fp_latency.json`. Seeds per row: the +- "
        "is the std over the seeds that row has (0 when only one).",
        "",
        f"Training speakers ({len(d['train_speakers'])}) and evaluation speakers ({len(d['eval_speakers'])}) are "
        "disjoint; sources: " + "; ".join(LICENCES.values()) + ". Evaluation mixtures: "
        + ", ".join(f"{k} {v}" for k, v in d["eval_sets"].items())
        + " (two different speakers, gains +-5 dB; `real` = both speakers real recordings, `asterisk` = both "
        "asterisk prompt speakers).",
        "",
        f"Training: {d['steps']} Adam steps of 4 random 1 s mixtures per configuration and seed (seeds "
        f"{d['seeds']}), on one thread of a 2-core machine shared with several other jobs (load 15-25): that is "
        "what fit in the time, far less than the paper's training, so absolute SI-SNRi is low and differences "
        "of a few tenths of a dB are within seed noise (see std).",
        "",
        *HEADER,
        f"| paper: STMC | {d['paper']['stmc_si_snri']} |  |  |  |  |  |  |  |  |  |  |  |",
        f"| paper: PP | | | | -{d['paper']['pp_loss']} % | | -{d['paper']['pp_cut']} % | | | | | | |",
        f"| paper: FP | | | | -{d['paper']['fp_loss']} % | | -{d['paper']['fp_cut']} % | | | "
        f"-{d['paper']['fp_time_cut']} % time | | | |",
    ]
    body += _rows(cf)
    if "STMC @ 4 kHz (resampled)" in cf:
        c = cf["STMC @ 4 kHz (resampled)"]
        body += ["", "Resampling baselines (the STMC net trained at 4 kHz, 8 kHz mixtures resampled down and "
                 "its outputs up): " + ", ".join(
                     f"{m}: {c['summary'][f'si_snri_{m}:all']['mean']:.2f} dB" for m in ("linear", "polyphase", "kaiser")
                     if f"si_snri_{m}:all" in c["summary"]) + f" at {_f(c.get('mac_cut_pct'), '.0f')} % MAC cut."]
    long_path = results / "soi_speech_long.json"
    long_cf: dict[str, Any] = {}
    if long_path.is_file():
        dl = json.loads(long_path.read_text())
        long_cf = dl["configs"]
        body += ["", f"### Longer training ({dl['steps']} steps, seed {dl['seeds']}): the target configurations", "",
                 "The same set-up with 7.5x the training steps, for the configurations the targets are about "
                 f"(`python experiments/soi_speech.py --seeds 0 --steps {dl['steps']} --only ...`).", "", *HEADER,
                 *_rows(long_cf)]
    if d.get("skipped_for_time"):
        body += ["", "Not run (time budget): " + ", ".join(d["skipped_for_time"]) + "."]
    lat = results / "soi_fp_latency.json"
    fp_lines: list[str] = []
    if lat.is_file():
        L = json.loads(lat.read_text())
        body += ["", "### FP: critical path with `Stream.precompute` (thinkonce.soi)", "", L["note"], "",
                 "| FP configuration | STMC MACs/step | critical MACs/step (peak) | peak cut | mean cut | "
                 "STMC step median (us) | critical step median (us) | precompute median (us) | critical time cut | "
                 "stream = model |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, c in L["configs"].items():
            body.append(f"| {n} | {c['stmc_macs_per_step']} | {c['critical_macs_peak']} | {c['peak_mac_cut_pct']:.1f} % | "
                        f"{c['mean_mac_cut_pct']:.1f} % | {c['stmc_us_median']:.0f} | {c['critical_us_median']:.0f} | "
                        f"{c['precompute_us_median']:.0f} | {c['critical_time_cut_pct']:.1f} % | "
                        f"{c['stream_vs_model_max_abs']:.1e} |")
            fp_lines.append(f"{n}: peak -{c['peak_mac_cut_pct']:.0f} % MACs, critical step time "
                            f"{-c['critical_time_cut_pct']:+.0f} % vs STMC")
    body += ["", "Reading (where we match or fall short of the paper, and why):", "",
             "- **Complexity** is exact and independent of training: every S-CC configuration streams equal to its "
             "offline model (last column) and the stream really skips the half-rate layers (peak MACs/step = STMC's "
             "on the step that runs the deep path, far fewer on the others). One S-CC can cut at most 50 % (it "
             "halves what lies below it); cuts beyond 50 %, as the paper's -64.4 %, need two S-CC (deep path at a "
             "quarter rate) or an S-CC placed before most of the work.",
             "- **Quality** falls far short of the paper's 7.69 dB STMC baseline: the U-Net is small (~0.2 M "
             "MACs/frame), trained for minutes on one starved thread (the machine was shared with many jobs, load "
             "15-25), so all configurations sit near the same low SI-SNRi and their differences are within the "
             "seed spread. Whether S-CC costs ~10 % at full training is therefore *not* established here; the "
             "table shows only that it costs nothing measurable at this level.",
             "- **Time** per step does not follow the MAC cut at batch 1: at ~0.2 M MACs a step is dominated by "
             "per-op overhead of the eager stream, and timings under this load are noisy (mean and median both "
             "shown; only side-by-side ratios are meaningful).",
             "- **FP**: with `Stream.precompute` the deep path leaves the critical path; the critical step's MACs "
             "fall as in the table below, the measured critical time less (overhead again)."]
    png = results / "soi_speech.png"
    if "STMC" in cf and "mac_cut_pct" in cf["STMC"]:
        _plot(d, png)
        body += ["", f"![SI-SNRi loss vs MAC cut]({png.relative_to(results.parent)})"]
    # targets
    summary = []
    for label, table in (("sweep", cf), ("longer training", long_cf)):
        if "STMC" not in table:
            continue
        pp = [(n, c) for n, c in table.items() if c.get("mode") == "pp" and c.get("scc") and "mac_cut_pct" in c]
        ok = [(n, c) for n, c in pp if c["mac_cut_pct"] >= 50 and c["si_snri_loss_pct"] <= 10]
        summary.append(f"- SOI speech ({label}), PP target (>= 50 % MAC/s cut at <= 10 % SI-SNRi loss): "
                       + ("met by " + ", ".join(f"{n} (-{c['mac_cut_pct']:.1f} % MACs, {-c['si_snri_loss_pct']:+.1f} % SI-SNRi)"
                                               for n, c in ok) if ok else "**missed**")
                       + f"; STMC baseline {_q(table['STMC'])['mean']:.2f} +- {_q(table['STMC'])['std']:.2f} dB against the "
                       "paper's 7.69 dB: our networks are under-trained (CPU time), and at this level the SI-SNRi "
                       "differences are within seed noise, so this says the S-CC costs no measurable quality "
                       "*here*, not that the paper's trade-off is reproduced.")
    if fp_lines:
        met = all(json.loads(lat.read_text())["configs"][n]["critical_time_cut_pct"] > 0 for n in json.loads(lat.read_text())["configs"])
        summary.append("- SOI speech, FP target (peak per-step latency below STMC's): " + ("met" if met else "**missed**")
                       + ": " + "; ".join(fp_lines) + " (paper: -28.7 % inference time).")
    return body + [""], summary


def asc_section(results: Path) -> tuple[list[str], list[str]]:
    path = results / "soi_asc.json"
    title = "## SOI: acoustic scene classification (1-D ResNet on log-mel frames)"
    if not path.is_file():
        return [title, "", "`soi_asc.json` is missing: run `python experiments/soi_asc.py --setup`.", ""], \
            ["- SOI scene classification: not run."]
    d = json.loads(path.read_text())
    body = [title, ""]
    if d.get("quick"):
        body += ["**Quick (smoke-test) run: numbers not meaningful.**", ""]
    body += [
        "Reproduce: `make soi-data`, then `python experiments/soi_asc.py --setup`.",
        "",
        f"Data: {len(d['classes'])} classes of real ambience/event recordings from Debian game-data packages "
        "(licences: " + ", ".join(f"`{k}` {v}" for k, v in ASC_LICENCES.items()) + "), split by distinct source "
        "file: " + ", ".join(f"{c} {d['train_files'][c]}/{d['test_files'][c]} ({d['class_sources'][c]})"
                            for c in d["classes"]) + " (train/test files).",
        f" {d['test_windows']} test windows of {d['window_frames']} frames (1.02 s), hop {d['hop_frames']} "
        f"frames; {d['steps']} training steps, seeds {d['seeds']}. " + d["paper"] + ".",
        "",
        "| model | window acc (normal) | window acc (stream) | params | MMAC/s normal windowed | MMAC/s stream | "
        "MAC cut vs STMC stream | time/hop normal (us) | time/hop stream (us) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    st = d["configs"].get("STMC")
    for n, c in d["configs"].items():
        cut = 100 * (1 - c["mmac_per_s_stream"] / st["mmac_per_s_stream"]) if st else math.nan
        body.append(f"| {n} | {c['window_acc_mean']:.3f} +- {c['window_acc_std']:.3f} | "
                    f"{c['stream_window_acc_mean']:.3f} +- {c['stream_window_acc_std']:.3f} | {c['params']} | "
                    f"{c['mmac_per_s_normal']:.2f} | {c['mmac_per_s_stream']:.2f} | {_f(cut, '.1f')} % | "
                    f"{c['us_per_hop_normal_median']:.0f} | {c['us_per_hop_stream_median']:.0f} |")
    body += ["", "\"normal\" = every window run alone (the baseline); \"stream\" = `thinkonce.stream(model, window=64, "
             "hop=16)` over the whole test file (left context is real signal, so its accuracy differs slightly "
             "from normal windowed inference); STMC = the stride-1 ResNet streamed; SOI@k = S-CC in block k.", ""]
    summ = ["- SOI scene classification: " + "; ".join(
        f"{n} acc {c['window_acc_mean']:.3f}, {c['mmac_per_s_stream']:.2f} MMAC/s" for n, c in d["configs"].items()) + "."]
    return body, summ


def soi_sections(results: Path) -> tuple[list[str], list[str]]:
    b1, s1 = speech_section(results)
    b2, s2 = asc_section(results)
    return b1 + b2, s1 + s2
