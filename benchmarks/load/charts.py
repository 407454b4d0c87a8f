"""PNG charts of a load run (matplotlib, no display): what report.md shows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _marks(ax, steps, faults, t0: float) -> None:
    for step in steps[1:]:
        ax.axvline(step.start_s, color="0.85", lw=0.8, zorder=0)
    for f in faults:
        ax.axvline(f["t"] - t0, color="tab:red", lw=1, ls="--")
        ax.text(
            f["t"] - t0,
            ax.get_ylim()[1],
            f" {f['action']}",
            color="tab:red",
            fontsize=7,
            va="top",
            rotation=90,
        )


def draw(
    out: Path, summary: dict, steps, t0: float, queue, util, resources, faults, records, done_at=None
) -> list[str]:
    """The charts; ``done_at``: the job store's end times (else the clients' own)."""
    folder = out / "charts"
    folder.mkdir(exist_ok=True)
    rows = summary["steps"]
    names = []
    x = [f"{r['users']}u" for r in rows]

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(x, [r["submit_rate"] for r in rows], "o-", label="accepted / s")
    a1.plot(x, [r["completed_rate"] for r in rows], "s-", label="completed / s")
    a1.set_title("throughput per step")
    a1.set_xlabel("users")
    a1.legend()
    if done_at is not None:
        ends = sorted(t - t0 for t in done_at)
    else:
        ends = sorted(
            e["t_submit"] + e["e2e_s"] - t0
            for e in records
            if e.get("ev") == "end" and e.get("state") == "done"
        )
    subs = sorted(r["t"] - t0 for r in records if r.get("ev") == "submit" and r.get("id"))
    width = 5.0
    horizon = max(ends[-1] if ends else 0, subs[-1] if subs else 0, steps[-1].end_s)
    bins = [i * width for i in range(int(horizon // width) + 2)]
    if subs:
        a2.hist(subs, bins=bins, histtype="step", label="accepted", weights=[1 / width] * len(subs))
    if ends:
        a2.hist(ends, bins=bins, histtype="step", label="completed", weights=[1 / width] * len(ends))
    a2.set_title("jobs per second over time")
    a2.set_xlabel("s")
    a2.legend()
    _marks(a2, steps, faults, t0)
    names.append(_save(fig, folder / "throughput.png"))

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    ended = [r["e2e_s"].get("n", 1) > 0 for r in rows]
    for q in ("p50", "p95", "p99"):
        a1.plot(x, [r["submit_ms"][q] for r in rows], "o-", label=q)
        a2.plot(
            x, [r["e2e_s"][q] if e else float("nan") for r, e in zip(rows, ended, strict=True)], "o-", label=q
        )
    a1.axhline(summary["bounds"]["p99_submit_ms"], color="tab:red", ls=":", label="p99 bound")
    a1.set_title("submit latency (ms)")
    a2.set_title("end-to-end latency (s)")
    for ax in (a1, a2):
        ax.set_xlabel("users")
        ax.legend()
    if not any(ended):
        a2.clear()
        a2.set_axis_off()
        a2.text(0.5, 0.5, "end-to-end latency: no job ended\n(API only: nothing renders)", ha="center")
    if summary["knee"]["step"] is not None:
        a1.axvline(summary["knee"]["step"], color="tab:red", lw=6, alpha=0.15)
    names.append(_save(fig, folder / "latency.png"))

    kinds = sorted({k for r in rows for k in r["errors"]})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bottom = [0.0] * len(rows)
    for kind in kinds:
        values = [r["errors"].get(kind, 0) for r in rows]
        ax.bar(x, values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title("errors per step by kind" + ("" if kinds else ": none"))
    if kinds:
        ax.legend(fontsize=7)
    names.append(_save(fig, folder / "errors.png"))

    if queue:
        fig, ax = plt.subplots(figsize=(11, 3.5))
        t = [float(r["t"]) - t0 for r in queue]
        ax.plot(t, [float(r["queued"]) for r in queue], label="queued (job store)")
        ax.plot(t, [float(r["active"]) for r in queue], label="running")
        if any(r["broker_ready"] for r in queue):
            ax.plot(t, [float(r["broker_ready"] or "nan") for r in queue], label="broker ready")
        ax.set_title("queue depth")
        ax.set_xlabel("s")
        ax.legend()
        _marks(ax, steps, faults, t0)
        names.append(_save(fig, folder / "queue.png"))

    if util:
        fig, ax = plt.subplots(figsize=(11, 3))
        per_t: dict[float, list[float]] = defaultdict(list)
        for r in util:
            per_t[round(float(r["t"]) - t0)].append(float(r["busy"]))
        ts = sorted(per_t)
        ax.plot(ts, [sum(per_t[t]) / len(per_t[t]) for t in ts])
        ax.set_ylim(0, 1.05)
        ax.set_title("worker / host utilisation (mean)")
        ax.set_xlabel("s")
        _marks(ax, steps, faults, t0)
        names.append(_save(fig, folder / "utilisation.png"))

    if resources:
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
        cpu: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        rss: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        for r in resources:
            t = round(float(r["t"]) - t0, 1)
            cpu[r["kind"]][t] += float(r["cpu_pct"])
            rss[r["name"]][t] += float(r["rss_mb"])
        for kind, values in sorted(cpu.items()):
            ts = sorted(values)
            a1.plot(ts, [values[t] for t in ts], label=kind)
        for name, values in sorted(rss.items()):
            ts = sorted(values)
            a2.plot(ts, [values[t] for t in ts], label=name, lw=0.8)
        a1.set_title("CPU % by component kind (100 = one core)")
        a2.set_title("resident memory (MB) by component")
        a1.legend(fontsize=7, ncol=4)
        a2.legend(fontsize=6, ncol=6)
        a2.set_xlabel("s")
        _marks(a1, steps, faults, t0)
        names.append(_save(fig, folder / "resources.png"))
    return names


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"charts/{path.name}"
