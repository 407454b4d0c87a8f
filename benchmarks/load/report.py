"""The load report: per-step numbers, the knee, charts and one Markdown page; ``--compare OLD NEW``.

    python -m benchmarks.load.report results/load/20261202-140000-run        # (re)build its report.md
    python -m benchmarks.load.report --compare results/load/OLD results/load/NEW

Reads only the run's files (jobs.jsonl, resources/queue/util/storage.csv, faults.jsonl,
accounting.json, config.json), so a run can be reported again, or compared, at any time.
The knee is the first step whose p99 submit latency or share of failed submissions leaves
its bound (config: --p99-ms, --max-errors); the capacity is the last step before it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from comfyui_sonic.runner.capacity.simulate import percentile

from .jobs_log import read_jobs
from .steps import Step, parse_steps

KINDS = ("api", "worker", "host", "nginx", "postgres", "rabbitmq", "s3", "load")
#: Servers whose memory follows the data they hold (PostgreSQL's shared buffers, SeaweedFS's needle
#: index, RabbitMQ's queues): their growth is shown next to the database and bucket growth, not judged.
DATA_STORES = {"postgres", "s3", "rabbitmq"}
#: Shown, not judged either: the load generator is the test's own client (Locust's connection pool
#: and the greenlets following jobs grow with the jobs in flight), not a part of the service.
NOT_JUDGED = DATA_STORES | {"load"}


def _csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _pcts(values: list[float]) -> dict:
    return {f"p{q}": percentile(values, q) for q in (50, 95, 99)} | {"n": len(values)}


def step_table(records: list[dict], steps: list[Step], t0: float, queue: list[dict], util: list[dict],
               resources: list[dict], trace: list[dict] | None = None) -> list[dict]:  # fmt: skip
    """One row per step: throughput, latencies, errors, queue, utilisation, CPU and memory by kind."""
    submits = [r for r in records if r.get("ev") == "submit"]
    ends = [r for r in records if r.get("ev") == "end"]
    kind_of = {r["name"]: r["kind"] for r in resources}
    rows = []
    for step in steps:
        lo, hi = t0 + step.start_s, t0 + step.end_s
        mine = [r for r in submits if lo <= r["t"] < hi]
        accepted = [r for r in mine if r.get("id")]
        errors = Counter(r["error"] for r in mine if r.get("error"))
        finished = [e for e in ends if lo <= e["t_submit"] < hi]
        done = [e for e in finished if e.get("state") == "done" and not e.get("error")]
        errors.update(e["error"] for e in finished if e.get("error"))
        if trace:  # the job store's end times: they include jobs that ended after the clients stopped
            completed_in = [r for r in trace if r["state"] == "done" and lo <= _done_at(r, t0) < hi]
        else:
            completed_in = [
                e for e in ends if e.get("state") == "done" and lo <= e["t_submit"] + e["e2e_s"] < hi
            ]
        server = [float(r["wait_s"]) + float(r["job_s"]) for r in trace or []
                  if r["state"] == "done" and step.start_s <= float(r["t"]) < step.end_s]  # fmt: skip
        q = [r for r in queue if lo <= float(r["t"]) < hi]
        u = [float(r["busy"]) for r in util if lo <= float(r["t"]) < hi]
        cpu, rss = defaultdict(list), defaultdict(float)
        per_t: dict[tuple[str, str], float] = defaultdict(float)
        for r in resources:
            if lo <= float(r["t"]) < hi:
                per_t[(r["t"], r["kind"])] += float(r["cpu_pct"])
                rss[r["name"]] = max(rss[r["name"]], float(r["rss_mb"]))
        for (_, kind), value in per_t.items():
            cpu[kind].append(value)
        rss_kind: dict[str, float] = defaultdict(float)
        for name, value in rss.items():
            rss_kind[kind_of.get(name, name)] += value
        rows.append(
            {
                "step": step.index,
                "users": step.users,
                "seconds": step.seconds,
                "submitted": len(mine),
                "accepted": len(accepted),
                "submit_rate": len(accepted) / step.seconds,
                "completed_rate": len(completed_in) / step.seconds,
                "submit_ms": _pcts([r["submit_ms"] for r in mine]),
                "e2e_s": _pcts([e["e2e_s"] for e in done]),
                "server_e2e_s": _pcts(server),
                "errors": dict(errors),
                "error_rate": (sum(1 for r in mine if r.get("error")) / len(mine)) if mine else 0.0,
                "queue_mean": sum(float(r["queued"]) for r in q) / len(q) if q else None,
                "queue_max": max((float(r["queued"]) for r in q), default=None),
                "loadavg": (sum(float(r.get("loadavg") or 0) for r in q) / len(q)) if q else None,
                "utilisation": sum(u) / len(u) if u else None,
                "cpu_pct": {k: sum(v) / len(v) for k, v in cpu.items()},
                "rss_mb": dict(rss_kind),
            }
        )
    return rows


def _done_at(row: dict, t0: float) -> float:
    """When a trace.csv job ended, in the clock of jobs.jsonl (``t`` counts from the test's start)."""
    return t0 + float(row["t"]) + float(row["wait_s"]) + float(row["job_s"])


def knee(rows: list[dict], p99_ms: float, max_errors: float) -> dict:
    """The first step out of bounds (p99 submit latency or error share) and the last one within."""
    within = None
    for row in rows:
        reasons = []
        if row["submit_ms"]["n"] and row["submit_ms"]["p99"] > p99_ms:
            reasons.append(f"p99 submit {row['submit_ms']['p99']:.0f} ms > {p99_ms:g} ms")
        if row["error_rate"] > max_errors:
            reasons.append(f"errors {row['error_rate']:.1%} > {max_errors:.1%}")
        if reasons:
            return {"step": row["step"], "users": row["users"], "submit_rate": row["submit_rate"],
                    "why": "; ".join(reasons), "last_good": within}  # fmt: skip
        within = {"step": row["step"], "users": row["users"], "submit_rate": row["submit_rate"]}
    return {"step": None, "why": "every step stayed within its bounds", "last_good": within}


def fault_effects(
    faults: list[dict], records: list[dict], trace: list[dict], t0: float, window_s: float = 30.0
) -> list[dict]:
    """Per fault: client errors in the ``window_s`` after it (or until the next fault, whose errors
    are its own), and how long completions took to recover.

    Recovery: from the fault until completions over a 10 s window are back to 80% of their rate
    in the ``window_s`` before it (None: they never were during the run, or nothing completed before).
    """
    done_at = sorted(
        t0 + float(r["t"]) + float(r["wait_s"]) + float(r["job_s"]) for r in trace if r["state"] == "done"
    )
    out = []
    starts = sorted(f["t"] for f in faults)
    for f in faults:
        t = f["t"]
        end = min([t + window_s, *(s for s in starts if s > t)])
        errors = Counter(  # by when the answer came: a request sent just before a fault fails by it
            r["error"]
            for r in records
            if r.get("ev") == "submit"
            and r.get("error")
            and t <= r["t"] + r.get("submit_ms", 0.0) / 1000 < end
        )
        before = sum(1 for d in done_at if t - window_s <= d < t) / window_s
        recovered = None
        if before > 0:
            probe = t
            while probe < (done_at[-1] if done_at else t):
                if sum(1 for d in done_at if probe <= d < probe + 10.0) / 10.0 >= 0.8 * before:
                    recovered = probe - t
                    break
                probe += 1.0
        out.append({"fault": f["fault"], "at_s": t - t0, "errors_after": dict(errors), "errors_window_s": end - t,
                    "completed_per_s_before": before, "recovery_s": recovered})  # fmt: skip
    return out


def _not_judged(component: dict) -> str:
    return "not judged (the clients)" if component.get("kind") == "load" else "not judged (a data store)"


def soak_analysis(resources: list[dict], storage: list[dict], accepted: int, max_growth: float) -> dict:
    """Memory and fd growth of each component after warm-up (the first 20%, at least 60 s)."""
    series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for r in resources:
        if float(r["rss_mb"]) > 0:
            series[r["name"]].append((float(r["t"]), float(r["rss_mb"]), float(r["fds"])))
            kinds[r["name"]] = r["kind"]
    out, leaks = {}, []
    for name, points in sorted(series.items()):
        if len(points) < 10:
            continue
        start, end = points[0][0], points[-1][0]
        warm = start + max(60.0, 0.2 * (end - start))
        after = [p for p in points if p[0] >= warm]
        if len(after) < 10:
            continue
        k = max(3, len(after) // 10)
        first = sum(p[1] for p in after[:k]) / k
        last = sum(p[1] for p in after[-k:]) / k
        fd_first = sum(p[2] for p in after[:k]) / k
        fd_last = sum(p[2] for p in after[-k:]) / k
        growth = (last - first) / first if first else 0.0
        fd_growth = fd_last - fd_first
        judged = kinds.get(name) not in NOT_JUDGED
        leak = judged and (growth > max_growth or (fd_growth > 10 and fd_growth > 0.2 * fd_first))
        out[name] = {"rss_first_mb": first, "rss_last_mb": last, "growth": growth, "fds_first": fd_first,
                     "fds_last": fd_last, "leak": leak, "judged": judged, "kind": kinds.get(name)}  # fmt: skip
        if leak:
            leaks.append(name)
    result = {"components": out, "leaks": leaks, "max_growth": max_growth}
    if len(storage) >= 2 and accepted:
        a, b = storage[0], storage[-1]
        result["db_mb"] = [float(a["db_mb"]), float(b["db_mb"])]
        result["bucket_objects"] = [int(a["objects"]), int(b["objects"])]
        result["bucket_mb"] = [float(a["bucket_mb"]), float(b["bucket_mb"])]
        result["db_kb_per_job"] = (float(b["db_mb"]) - float(a["db_mb"])) * 1024 / accepted
        result["bucket_kb_per_job"] = (float(b["bucket_mb"]) - float(a["bucket_mb"])) * 1024 / accepted
    return result


def build(out: Path, soak: bool = False) -> dict:
    """summary.json, charts/*.png and report.md of the run in ``out``; returns the summary."""
    config = json.loads((out / "config.json").read_text()) if (out / "config.json").exists() else {}
    records = list(read_jobs(out / "jobs.jsonl"))
    start = next((r for r in records if r.get("ev") == "start"), None)
    steps = [Step(**s) for s in start["steps"]] if start else parse_steps(config.get("steps") or "1:1")
    t0 = start["t"] if start else config.get("started", 0.0)
    queue, util, resources = _csv(out / "queue.csv"), _csv(out / "util.csv"), _csv(out / "resources.csv")
    storage = _csv(out / "storage.csv")
    faults = list(read_jobs(out / "faults.jsonl"))
    accounting = (
        json.loads((out / "accounting.json").read_text()) if (out / "accounting.json").exists() else None
    )
    trace = _csv(out / "trace.csv")
    rows = step_table(records, steps, t0, queue, util, resources, trace)
    p99_ms, max_errors = float(config.get("p99_ms", 250.0)), float(config.get("max_errors", 0.01))
    summary = {
        "mode": config.get("mode"),
        "fleet": bool(config.get("fleet")),
        "api_only": bool(config.get("api_only")),
        "started": t0,
        "steps": rows,
        "knee": knee(rows, p99_ms, max_errors),
        "bounds": {"p99_submit_ms": p99_ms, "max_error_rate": max_errors},
        "faults": faults,
        "fault_effects": fault_effects(faults, records, trace, t0),
        "accounting": accounting,
    }
    if soak or config.get("mode") == "soak":
        summary["soak"] = soak_analysis(resources, storage, (accounting or {}).get("accepted", 0),
                                        float(config.get("max_growth", 0.05)))  # fmt: skip
    summary["verdict"] = verdict(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    from . import charts

    done_at = [_done_at(r, t0) for r in trace if r["state"] == "done"] if trace else None
    images = charts.draw(out, summary, steps, t0, queue, util, resources, faults, records, done_at)
    (out / "report.md").write_text(markdown(summary, images, out))
    return summary


def verdict(summary: dict) -> dict:
    """ok unless a job was lost or ran twice, a soak leaked, or a smoke run saw errors or unfinished jobs."""
    problems = []
    acc = summary.get("accounting")
    if acc:
        if acc["lost"]:
            problems.append(f"{acc['lost']} jobs lost")
        if acc["duplicated"]:
            problems.append(f"{acc['duplicated']} jobs duplicated")
        if summary["mode"] in ("smoke", "soak") and acc["unfinished"] and not summary.get("api_only"):
            problems.append(f"{acc['unfinished']} jobs unfinished after the drain")
        # A refused submission may leave its row, ended dead (never run); one left to run is a problem.
        waiting = {k: n for k, n in (acc.get("orphan_states") or {}).items() if k not in ("dead", "done")}
        if summary["mode"] == "smoke" and waiting:
            problems.append(f"{sum(waiting.values())} jobs stored after an error answer and left {waiting}")
    if summary["mode"] == "smoke":
        # Jobs ended by an injected OOM are accounted for (dead, with the reason), not errors.
        # What a fault makes the service answer, by design: OOM deaths, and 503 while the broker is down
        # (the client is told to retry); anything else is an error.
        actions = {f.get("action") for f in summary["faults"]}
        expected = {"job_dead:oom"} if "oom" in actions else set()
        expected |= {"503:broker_unavailable"} if "restart-broker" in actions else set()
        kinds = {k for r in summary["steps"] for k in r["errors"] if k not in expected}
        errors = sum(n for r in summary["steps"] for k, n in r["errors"].items() if k in kinds)
        if errors:
            problems.append(f"{errors} errors: " + ", ".join(sorted(kinds)))
        if not any(r["accepted"] for r in summary["steps"]):
            problems.append("no submission was accepted")
    soak = summary.get("soak")
    if soak and soak["leaks"]:
        problems.append("memory or fds keep growing: " + ", ".join(soak["leaks"]))
    return {"ok": not problems, "problems": problems}


def _fmt(value, spec: str = ".0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def _pct(p: dict, q: str, spec: str) -> str:
    """One percentile, or "-" when nothing was measured (API only: no job ends; a percentile of none is not 0)."""
    return format(p[q], spec) if p.get("n", 1) else "-"


def _triple(p: dict, spec: str) -> str:
    return "-" if not p.get("n", 1) else " / ".join(_pct(p, q, spec) for q in ("p50", "p95", "p99"))


def step_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| step | users | accepted/s | completed/s | submit p50/p95/p99 ms | end-to-end p50/p95/p99 s (client) "
        "| created-to-done p50/p95/p99 s (server) | errors | queue mean/max | util | machine load |",
        "|---:|---:|---:|---:|---|---|---|---|---|---:|---:|",
    ]
    for r in rows:
        s, e, g = r["submit_ms"], r["e2e_s"], r.get("server_e2e_s") or _pcts([])
        errs = ", ".join(f"{k} x{n}" for k, n in sorted(r["errors"].items())) or "0"
        lines.append(
            f"| {r['step']} | {r['users']} | {r['submit_rate']:.1f} | {r['completed_rate']:.1f} | "
            f"{_triple(s, '.0f')} | {_triple(e, '.1f')} | {_triple(g, '.1f')} | "
            f"{errs} | {_fmt(r['queue_mean'])} / {_fmt(r['queue_max'])} | {_fmt(r['utilisation'], '.0%')} | "
            f"{_fmt(r.get('loadavg'), '.1f')} |"
        )
    return lines


def markdown(summary: dict, images: list[str], out: Path) -> str:
    k = summary["knee"]
    lines = [f"# Load report: {out.name}", ""]
    mode = summary["mode"] or "?"
    parts = "fleet (RabbitMQ + workers + fake hosts)" if summary["fleet"] else "embedded workers"
    if summary.get("api_only"):
        parts = "API only (replicas without workers: jobs stay queued)"
    lines.append(f"Mode **{mode}**, {parts}. "
                 f"Bounds: p99 submit <= {summary['bounds']['p99_submit_ms']:g} ms, errors <= {summary['bounds']['max_error_rate']:.1%}. "
                 "Machine load is the 1-minute load average during the step: above the core count, every "
                 "component waited for a CPU and the latencies say more about the machine than the service.")  # fmt: skip
    lines.append("")
    if k["step"] is None:
        last = k["last_good"]
        lines.append(f"**Knee: not reached**; the last step ({last['users'] if last else '-'} users, "
                     f"{last['submit_rate'] if last else 0:.1f} submissions/s) stayed within bounds.")  # fmt: skip
    else:
        good = k["last_good"]
        lines.append(f"**Knee: step {k['step']}** ({k['users']} users, {k['submit_rate']:.1f} accepted/s): {k['why']}. "
                     + (f"Capacity within bounds: step {good['step']}, {good['users']} users, {good['submit_rate']:.1f} submissions/s."
                        if good else "No step was within bounds."))  # fmt: skip
    v = summary["verdict"]
    lines += [
        "",
        f"**Verdict: {'OK' if v['ok'] else 'FAILED'}**"
        + ("" if v["ok"] else ": " + "; ".join(v["problems"])),
        "",
    ]
    lines += ["## Steps", "", *step_lines(summary["steps"]), ""]
    lines += ["## CPU (mean %) and memory (max MB) per component kind", "", "| step | " + " | ".join(KINDS) + " |",
              "|---:|" + "---|" * len(KINDS)]  # fmt: skip
    for r in summary["steps"]:
        cells = [f"{_fmt(r['cpu_pct'].get(kind))} / {_fmt(r['rss_mb'].get(kind))}" for kind in KINDS]
        lines.append(f"| {r['step']} | " + " | ".join(cells) + " |")
    acc = summary.get("accounting")
    if acc:
        lines += ["", "## Every job accounted for", ""]
        lines.append(
            f"- accepted {acc['accepted']}; end states {acc['states']}; dead by kind {acc['dead_by_kind'] or '{}'}"
        )
        lines.append(
            f"- **lost {acc['lost']}**, **duplicated {acc['duplicated']}**, unfinished after the drain {acc['unfinished']}; "
            f"{acc.get('orphans', 0)} jobs stored that no client was told about {acc.get('orphan_states') or ''} "
            f"(besides {acc.get('cut_off_at_end', 0)} submissions cut off by the end of the load, found by their Idempotency-Key)"
        )
        lines.append(f"- {acc['attempts']} attempts ({acc['retried_jobs']} jobs retried), {acc['outputs']} outputs in the bucket, "
                     f"{acc['host_executions']} executions on fake hosts")  # fmt: skip
        sim = acc.get("simulator_check") or {}
        if sim.get("jobs"):
            err = sim.get("relative_error")
            lines.append(f"- simulator check (the measured arrivals and service times replayed on {sim['renderers']} renderers, "
                         f"each job + the hosts' hand-over of {sim.get('handover_s', 0.0) * 1000:.0f} ms): "
                         f"mean wait measured {sim['measured_mean_s']:.2f} s, simulated {sim['simulated_mean_s']:.2f} s"
                         + (f" ({err:.0%} apart)" if err is not None else " (waits too short to compare)")
                         + (" - faults were injected, which the replay does not model: not comparable"
                            if sim.get("faults_injected") else ""))  # fmt: skip
    if summary["faults"]:
        lines += ["", "## Faults injected", ""]
        effects = {e["fault"]: e for e in summary.get("fault_effects", [])}
        for f in summary["faults"]:
            e = effects.get(f["fault"], {})
            after = ", ".join(f"{k} x{n}" for k, n in sorted((e.get("errors_after") or {}).items()))
            rec = e.get("recovery_s")
            recovery = (
                f"completions back to 80% of their rate after {rec:.0f} s"
                if rec is not None
                else "completion recovery not measured (none before it, or never back)"
            )
            lines.append(
                f"- t+{f['t'] - summary['started']:.0f} s `{f['fault']}`: {f['detail']}"
                + ("" if f["ok"] else " (FAILED)")
                + f"; next {e.get('errors_window_s', 30.0):.0f} s: {after or 'no client errors'}; {recovery}"
            )
    soak = summary.get("soak")
    if soak:
        lines += ["", "## Soak: growth after warm-up", "", "| component | RSS first MB | RSS last MB | growth | fds first | fds last | leak |",
                  "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for name, c in soak["components"].items():
            lines.append(f"| {name} | {c['rss_first_mb']:.0f} | {c['rss_last_mb']:.0f} | {c['growth']:+.1%} | "
                         f"{c['fds_first']:.0f} | {c['fds_last']:.0f} | "
                         f"{'**LEAK**' if c['leak'] else ('no' if c.get('judged', True) else _not_judged(c))} |")  # fmt: skip
        if "db_kb_per_job" in soak:
            lines.append("")
            lines.append(f"Database {soak['db_mb'][0]:.1f} -> {soak['db_mb'][1]:.1f} MB ({soak['db_kb_per_job']:.1f} kB per job); "
                         f"bucket {soak['bucket_objects'][0]} -> {soak['bucket_objects'][1]} objects, "
                         f"{soak['bucket_mb'][0]:.1f} -> {soak['bucket_mb'][1]:.1f} MB ({soak['bucket_kb_per_job']:.1f} kB per job).")  # fmt: skip
    if images:
        lines += ["", "## Charts", ""] + [f"![{Path(i).stem}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def console(summary: dict) -> str:
    k, v = summary["knee"], summary["verdict"]
    lines = step_lines(summary["steps"])
    lines.append("knee: " + (f"step {k['step']} ({k['why']})" if k["step"] is not None else k["why"]))
    acc = summary.get("accounting")
    if acc:
        lines.append(
            f"jobs: accepted {acc['accepted']}, lost {acc['lost']}, duplicated {acc['duplicated']}, unfinished {acc['unfinished']}"
        )
    lines.append("verdict: " + ("OK" if v["ok"] else "FAILED: " + "; ".join(v["problems"])))
    return "\n".join(lines)


def compare(old: Path, new: Path) -> str:
    """Step by step, OLD vs NEW: accepted/s, p99 submit, p99 end-to-end, errors; and both knees."""
    a, b = (json.loads((p / "summary.json").read_text()) for p in (old, new))
    lines = [f"# {old.name} -> {new.name}", "",
             "| step | users | accepted/s | p99 submit ms | p99 end-to-end s | error rate |", "|---:|---:|---|---|---|---|"]  # fmt: skip
    for ra, rb in zip(a["steps"], b["steps"], strict=False):
        lines.append(
            f"| {rb['step']} | {ra['users']} -> {rb['users']} | {ra['submit_rate']:.1f} -> {rb['submit_rate']:.1f} | "
            f"{ra['submit_ms']['p99']:.0f} -> {rb['submit_ms']['p99']:.0f} | {_pct(ra['e2e_s'], 'p99', '.1f')} -> {_pct(rb['e2e_s'], 'p99', '.1f')} | "
            f"{ra['error_rate']:.1%} -> {rb['error_rate']:.1%} |"
        )

    def knee_text(s: dict) -> str:
        k = s["knee"]
        return f"step {k['step']} ({k['users']} users)" if k["step"] is not None else "not reached"

    lines += ["", f"knee: {knee_text(a)} -> {knee_text(b)}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("run", nargs="?", type=Path, help="a results folder")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"))
    args = parser.parse_args(argv)
    if args.compare:
        for path in args.compare:
            if not (path / "summary.json").exists():
                print(
                    f"report: {path} has no summary.json; give a results folder of a finished run",
                    file=sys.stderr,
                )
                return 2
        text = compare(*args.compare)
        (args.compare[1] / f"compare-{args.compare[0].name}.md").write_text(text)
        print(text)
        return 0
    if args.run is None or not (args.run / "jobs.jsonl").exists():
        print(f"report: {args.run} has no jobs.jsonl; give a results folder of a load run", file=sys.stderr)
        return 2
    summary = build(args.run)
    print(console(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
