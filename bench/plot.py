"""Draws the scaling result of a bench run as a PNG.

Usage: bench/.venv/bin/python bench/plot.py RESULTS.json OUT.png

RESULTS.json is what bench/measure.py writes next to its report (every single
run of `--once`, keyed "tool:N"). Two panels, against the number of instances
(log-log): median wall time, with the range of the runs as error bars, and
peak RSS (median of the runs where it was sampled). dds-certsync (files on
disk) against the official SDK script and the curl floor.
"""

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import FuncFormatter  # noqa: E402

TOOLS = [
    ("daemon", "dds-certsync --once", "tab:blue", "o"),
    ("sdk", "SDK script (huaweicloudsdkdds)", "tab:orange", "s"),
    ("curl", "curl floor (curl + jq + mv)", "tab:gray", "^"),
]


def series(once, tool):
    """[(n, median wall, min wall, max wall, median rss MiB or None)] sorted by n."""
    points = []
    for key, runs in once.items():
        name, _, count = key.rpartition(":")
        if name != tool:
            continue
        good = [r for r in runs if r.get("ok")]
        if not good:
            continue
        # As in measure.py's report: times from the runs without RSS sampling
        # (sampling slows a run), memory from the runs with it.
        walls = [r["wall"] for r in good if r.get("rss_kib") is None]
        rss = [r["rss_kib"] / 1024 for r in good if r.get("rss_kib") is not None]
        if not walls:
            continue
        points.append(
            (
                int(count),
                statistics.median(walls),
                min(walls),
                max(walls),
                statistics.median(rss) if rss else None,
            )
        )
    return sorted(points)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as handle:
        data = json.load(handle)
    once = data["once"]
    meta = data.get("meta", {})

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    for tool, label, color, marker in TOOLS:
        points = series(once, tool)
        if not points:
            continue
        ns = [p[0] for p in points]
        med = [p[1] for p in points]
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax_time.errorbar(ns, med, yerr=err, label=label, color=color, marker=marker, capsize=3)
        for n, m in zip(ns, med):
            text = f"{m * 1000:.0f} ms" if m < 1 else f"{m:.1f} s"
            ax_time.annotate(text, (n, m), textcoords="offset points", xytext=(6, -10),
                             fontsize=8, color=color)
        mem = [(p[0], p[4]) for p in points if p[4] is not None]
        if mem:
            ax_mem.plot([m[0] for m in mem], [m[1] for m in mem], label=label, color=color,
                        marker=marker)
            n, last = mem[-1]
            ax_mem.annotate(f"{last:.1f} MiB", (n, last), textcoords="offset points",
                            xytext=(6, 4), fontsize=8, color=color)

    ax_time.set(xscale="log", yscale="log", xlabel="instances (2 certificates each)",
                ylabel="wall time, median (bars: min to max)",
                title="Time to sync N instances from an empty folder")
    ax_time.yaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v * 1000:g} ms" if v < 1 else f"{v:g} s"))
    ax_mem.set(xscale="log", xlabel="instances (2 certificates each)",
               ylabel="peak RSS, MiB (median)", title="Peak memory")
    ax_mem.set_ylim(0, 55)
    for ax in (ax_time, ax_mem):
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlim(0.6, 4000)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax_time.legend(fontsize=8, loc="upper left")
    ax_mem.legend(fontsize=8, loc="center right")
    if not any(tool == "curl" and n >= 1000 for tool, n in
               ((k.rpartition(":")[0], int(k.rpartition(":")[2])) for k in once)):
        ax_time.text(0.99, 0.02, "curl floor not run at 1000 (about a minute per run)",
                     transform=ax_time.transAxes, ha="right", fontsize=7, color="tab:gray")
    fig.suptitle(
        f"bench/run, {meta.get('date', '?')}, {meta.get('host', '')}; "
        "nginx over HTTPS on loopback",
        fontsize=9,
    )
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
