#!/usr/bin/env python3
"""Plots a recorded autoscaler run (the JSON lines `eddy autoscale
--decisions FILE` writes): the group's lag, the workers running and
wanted, and each scale-up, scale-down and held-back decision.

    scripts/plot-autoscaler.py decisions.jsonl docs/autoscaler.png

Needs matplotlib (pip install matplotlib); not part of the build or tests.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, dst):
    rows = [json.loads(line) for line in open(src) if line.strip()]
    t = [r["observed"]["at"] for r in rows]
    lag = [r["observed"]["lag"] for r in rows]
    workers = [r["observed"]["workers"] for r in rows]
    desired = [r["desired"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=[3, 2])
    ax1.plot(t, lag, color="tab:red", label="total lag (input + repartition offsets)")
    ax1.set_ylabel("lag (records)")
    held = [r for r in rows if "before a new worker would be ready" in r["reason"]]
    if held:
        ax1.scatter([r["observed"]["at"] for r in held], [r["observed"]["lag"] for r in held],
                    marker="o", color="tab:orange", zorder=3,
                    label="held: drains before a new worker is ready")
    ax1.legend(loc="upper right")
    ax1.grid(alpha=0.3)
    ax2.step(t, workers, where="post", color="tab:blue", label="workers running")
    ax2.step(t, desired, where="post", color="tab:green", linestyle="--", label="workers wanted")
    for r in rows:
        if r["action"] == "up" and r["observed"]["workers"] > 0:
            ax2.annotate("up", (r["observed"]["at"], r["desired"]), textcoords="offset points",
                         xytext=(0, 6), ha="center", color="tab:green")
        if r["action"] == "down":
            ax2.annotate("down (cooldown over)", (r["observed"]["at"], r["desired"]),
                         textcoords="offset points", xytext=(0, 6), ha="center", color="tab:green")
    ax2.set_ylabel("workers")
    ax2.set_xlabel("seconds since the autoscaler started")
    ax2.set_ylim(0, max(desired + workers) + 1)
    ax2.legend(loc="upper right")
    ax2.grid(alpha=0.3)
    fig.suptitle("eddy autoscale: page-views, warm-up, a spike held back, a backlog scaled up, cooldown")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
