"""`sonic-runner` / `python -m runner`: run one job or a batch of saved workflows on ComfyUI hosts.

Only argparse is imported at module level: everything else (requests, websocket,
rich, PyAV, the batch machinery) is imported inside the command that needs it, so
`sonic-runner --help` answers at once and the runner never pulls in torch.

Exit codes: 0 every job done; 1 some job ended dead; 2 bad arguments or input
(one line on stderr); 3 no host could work for --give-up-after seconds (unfinished jobs
stay queued: use --resume later); 70 a bug in the runner (traceback in the log it names;
use --resume); 75 another runner holds the journal; 130 interrupted (the journal is
intact: use --resume).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .fleet import commands as fleet_commands
from .secrets import add_host_options

EXIT_OK, EXIT_DEAD, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_NO_HOST, EXIT_RUNNER_BUG, EXIT_BUSY = 3, 70, 75  # (the same values as runner/batch.py's)
#: What to check when a host cannot be reached (printed with each host's error on exit 3).
HOST_HINT = (
    "check that ComfyUI runs there (started with --listen for other machines), the URL and port, "
    "the name's DNS entry and any firewall or proxy in between"
)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds; give e.g. 600") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds, e.g. 600")
    return value


def _kv(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected KEY=VALUE, e.g. seed=42 or Sonic.fps=25")
    return key.strip(), value


def _add_output_mode(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quiet", action="store_true", help="print only the final summary and errors")
    mode.add_argument("--jsonl", action="store_true", help="print every event as one JSON object per line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonic-runner",
        description="Send saved ComfyUI workflows (API format) to ComfyUI hosts, one job or a whole batch.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="render one job (in-process without --host)")
    run.add_argument("workflow", type=Path, help="workflow saved with 'Save (API)' (*_api.json)")
    run.add_argument("--image", type=Path, required=True, help="portrait image")
    speech = run.add_mutually_exclusive_group(required=True)
    speech.add_argument("--audio", type=Path, help="speech clip")
    speech.add_argument(
        "--text", help="words to speak instead of a clip (with a sonic_*_text_* template; see --voice)"
    )
    run.add_argument(
        "--voice",
        help="with --text: the voice (espeak-ng language such as en-us, or your TTS service's voice)",
    )
    run.add_argument(
        "--set",
        dest="sets",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a workflow input: Title.input=value, ClassType.input=value or an alias (seed, fps, ...)",
    )
    run.add_argument("--host", help="ComfyUI URL; without it the workflow runs in this process")
    run.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="HTTP header for --host (value 'env:VAR' reads an environment variable)",
    )
    run.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder (default: current)")
    run.add_argument("--timeout", type=float, default=3600.0, help="seconds the job may run (default 3600)")
    run.add_argument(
        "--give-up-after",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="with --host: fail (exit 3) when the host cannot be reached for this long "
        "(default: --timeout, at most 180)",
    )
    run.add_argument(
        "--models",
        type=Path,
        default=None,
        help="without --host: folder with the sonic model files (default: $SONIC_MODELS_DIR)",
    )
    _add_output_mode(run)

    batch = sub.add_parser("batch", help="run every row of a manifest across hosts, with a resumable journal")
    batch.add_argument("workflow", type=Path, help="workflow saved with 'Save (API)' (*_api.json)")
    batch.add_argument(
        "manifest", type=Path, help="CSV or JSON-lines manifest: image, audio, id, priority, params"
    )
    add_host_options(batch, "file listing hosts (JSON list or one host per line)")
    batch.add_argument("--out", type=Path, required=True, help="output folder")
    batch.add_argument("--journal", type=Path, help="journal file (default OUT/journal.sqlite)")
    batch.add_argument("--resume", action="store_true", help="continue the batch recorded in the journal")
    batch.add_argument("--max-attempts", type=int, default=4, help="attempts per job (default 4)")
    batch.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds one attempt may run once started (default 3600)",
    )
    batch.add_argument(
        "--inflight",
        type=int,
        default=2,
        help="jobs in flight per host (default 2: one running, one queued behind it)",
    )
    batch.add_argument(
        "--failover-grace",
        type=float,
        default=30.0,
        help="seconds an unreachable host keeps its jobs before they move elsewhere (default 30); "
        "'inf' = never move a job its host has not confirmed lost",
    )
    batch.add_argument(
        "--give-up-after",
        type=_seconds,
        default=600.0,
        metavar="SECONDS",
        help="stop with exit 3 when no host could work for this long (default 600; inf = never); unfinished jobs "
        "stay queued in the journal for --resume",
    )
    batch.add_argument(
        "--retry-excluded",
        action="store_true",
        help="with --resume: try again hosts an earlier run excluded for missing model files",
    )
    batch.add_argument("--poll-interval", type=float, default=2.0, help="history polling backstop, seconds")
    batch.add_argument(
        "--webhook",
        help="URL to POST each finished job to (Standard Webhooks, secret whsec_... in SONIC_WEBHOOK_SECRET; "
        "kept in an outbox beside the journal until delivered)",
    )
    batch.add_argument(
        "--set",
        dest="sets",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a workflow input for every row (a manifest column wins)",
    )
    _add_output_mode(batch)
    fleet_commands.add_fleet_options(batch)

    status = sub.add_parser("status", help="counts of a journal's jobs by state and per host")
    status.add_argument("journal", type=Path, nargs="?", help="the batch's journal (local mode)")
    status.add_argument("--json", action="store_true", help="print JSON")
    fleet_commands.add_store_options(status)

    report = sub.add_parser("report", help="per-job report of a journal (table or --json)")
    report.add_argument("journal", type=Path, nargs="?", help="the batch's journal (local mode)")
    report.add_argument("--json", action="store_true", help="print JSON")
    fleet_commands.add_store_options(report)
    fleet_commands.add_worker_parser(sub)

    hosts = sub.add_parser(
        "hosts", help="check hosts: reachable, ComfyUI version, our nodes, models, free VRAM"
    )
    hosts.add_argument("--host", dest="hosts", action="append", default=[], metavar="URL")
    hosts.add_argument("--hosts-file", type=Path)
    hosts.add_argument("--json", action="store_true", help="print JSON")

    serve = sub.add_parser(
        "serve", help="HTTP job API (embedded default: SQLite, a local folder, an in-process worker)"
    )
    serve.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--db", default=None, metavar="URL", help="job store (default sqlite:///sonic-data/jobs.sqlite)"
    )
    serve.add_argument(
        "--bucket", default=None, help="s3://BUCKET[/PREFIX] or a folder (default sonic-data/objects)"
    )
    serve.add_argument(
        "--s3-endpoint", default=None, metavar="URL", help="S3-compatible server (MinIO, SeaweedFS, R2)"
    )
    serve.add_argument(
        "--broker",
        default=None,
        metavar="URL",
        help="fleet mode: publish jobs to this RabbitMQ for `sonic-runner worker`s (default: render in-process)",
    )
    serve.add_argument(
        "--pools",
        default=None,
        help="fleet mode: the resolution pools the workers consume, as their --pools (default 512,768,1024)",
    )
    serve.add_argument(
        "--no-auth", action="store_true", help="accept requests without an API key (a laptop only)"
    )
    serve.add_argument("--max-upload-mb", type=float, default=50)
    serve.add_argument("--max-audio-s", type=float, default=600)
    serve.add_argument(
        "--lease",
        type=float,
        default=30.0,
        help="embedded worker: seconds a rendering job stays held without renewal; after that another "
        "replica queues it again (default 30)",
    )
    serve.add_argument(
        "--allow-private-webhooks", action="store_true", help="allow webhook URLs on private addresses"
    )

    keys = sub.add_parser("keys", help="API keys of `serve`: create, list, revoke")
    keys.add_argument("action", choices=("create", "list", "revoke"))
    keys.add_argument("name_or_id", nargs="?", help="create: a name for the key; revoke: its id")
    keys.add_argument(
        "--db", default=None, metavar="URL", help="job store (default sqlite:///sonic-data/jobs.sqlite)"
    )
    keys.add_argument(
        "--max-queued", type=int, default=100, help="unfinished jobs a key may have (0: no limit)"
    )
    keys.add_argument(
        "--per-minute", type=int, default=60, help="submissions a key may make per minute (0: no limit)"
    )
    keys.add_argument(
        "--objects-prefix",
        default=None,
        metavar="FOLDER",
        help="JSON submissions with this key may name only objects under FOLDER of the bucket "
        "(e.g. uploads/acme/); default: any object outside jobs/",
    )

    _add_templates_parser(sub)

    gc = sub.add_parser("gc", help="delete stored job inputs and outputs older than --older-than")
    gc.add_argument(
        "--bucket", default=None, help="s3://BUCKET[/PREFIX] or a folder (default sonic-data/objects)"
    )
    gc.add_argument("--s3-endpoint", default=None, metavar="URL")
    gc.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 7d, 36h, 90m")

    dlq = sub.add_parser("dlq", help="fleet mode: list, re-drive or purge the broker's dead-letter queue")
    dlq.add_argument("action", choices=("list", "retry", "purge"))
    dlq.add_argument("--broker", required=True, metavar="URL", help="e.g. amqp://user:pass@rabbit:5672//")
    dlq.add_argument("--json", action="store_true", help="print JSON (list)")

    from .capacity.plan import add_parser as add_plan_parser

    add_plan_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "run": cmd_run,
        "batch": cmd_batch,
        "status": cmd_status,
        "report": cmd_report,
        "hosts": cmd_hosts,
        "dlq": cmd_dlq,
        "serve": cmd_serve,
        "keys": cmd_keys,
        "templates": cmd_templates,
        "gc": cmd_gc,
        "plan": cmd_plan,
        "worker": fleet_commands.cmd_worker,
    }[args.command]
    from .journal import JournalLockedError

    try:
        return handler(args)
    except JournalLockedError as exc:
        print(f"sonic-runner: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except BrokenPipeError:  # `sonic-runner report | head`: the reader left, nothing more to say
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        hint = (
            "the journal is intact, continue with --resume"
            if args.command == "batch"
            else "nothing was saved"
        )
        print(f"sonic-runner: interrupted; {hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - user-facing errors become one line
        if not _is_user_error(exc):
            raise
        from .secrets import redact

        print(f"sonic-runner: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def _is_user_error(exc: Exception) -> bool:
    from .batch import BatchError
    from .fleet.errors import BrokerError
    from .journal import JournalError

    user_errors: tuple[type, ...] = (BatchError, BrokerError, JournalError, ValueError, FileNotFoundError)
    try:
        from .storage import StorageError
        from .store import StoreError

        user_errors += (StoreError, StorageError)
    except ImportError:  # the runner-only install has no fleet libraries
        pass
    return isinstance(exc, user_errors)


# ---------------------------------------------------------------------- sinks
def _sinks(args: argparse.Namespace) -> tuple[list, list]:
    """(sinks, closers) for the chosen output mode (`batch --webhook` adds `_webhook_sink`)."""
    from . import display

    if getattr(args, "jsonl", False):
        sink = display.JsonLinesSink(sys.stdout)
    elif getattr(args, "quiet", False):
        sink = display.QuietSink()
    else:
        sink = display.RichProgressDisplay()
    return [sink], [sink]


def _webhook_sink(args: argparse.Namespace, batch):
    """``batch --webhook``: the durable outbox beside the journal (None without a webhook).

    A ``--resume`` without ``--webhook`` keeps sending to the URL the batch was started with.
    """
    from .batch_webhooks import DurableWebhooks, recorded_url

    journal = batch.config.journal_file()
    url = args.webhook or (recorded_url(journal) if args.resume else None)
    if not url:
        return None
    meta = batch.journal.meta()
    created = meta.get("created")
    return DurableWebhooks(
        journal,
        url,
        batch_id=f"batch@{created}",  # (not the path: a moved out folder is the same batch)
        jobs=batch.jobs,
        host_names=dict(batch.host_names),
        resume=args.resume,
        since=None if args.resume else float(created or 0) or None,
    )


def _close(closers: list) -> None:
    for thing in closers:
        close = getattr(thing, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing a display must not hide the batch's result
                pass


# ---------------------------------------------------------------------- commands
def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import Batch, BatchConfig
    from .retry import RetryPolicy
    from .secrets import parse_hosts

    if args.broker:
        _check_out_dir(args.out, "--out")
        return fleet_commands.cmd_fleet_batch(args, _sinks)
    _check_host_values(args.hosts, options=True)
    hosts = parse_hosts(args.hosts, args.hosts_file)
    if not hosts:
        raise ValueError("batch: no hosts; give --host URL (repeatable) or --hosts-file FILE")
    if args.max_attempts < 1 or args.inflight < 1:
        raise ValueError("--max-attempts and --inflight must be at least 1")
    _check_out_dir(args.out, "--out")
    config = BatchConfig(
        workflow_path=args.workflow,
        out_dir=args.out,
        hosts=hosts,
        journal_path=args.journal,
        manifest_path=args.manifest,
        params=dict(args.sets),
        resume=args.resume,
        policy=RetryPolicy(max_attempts=args.max_attempts),
        inflight=args.inflight,
        timeout=args.timeout,
        failover_grace=args.failover_grace,
        poll_interval=args.poll_interval,
        give_up_after=args.give_up_after,
        retry_excluded=args.retry_excluded,
    )
    batch = Batch(config)
    batch.open()
    try:
        hooks = _webhook_sink(args, batch)
        sinks, closers = _sinks(args)
        if hooks is not None:
            sinks, closers = [*sinks, hooks], [*closers, hooks]
        batch.sinks = sinks
        try:
            code = batch.run()
        finally:
            _close(closers)
        _print_stopped(batch, f"; they stay queued in {config.journal_file()}, continue with --resume")
    finally:
        batch.close()
    dead = [j for j in batch.jobs.values() if j.state == "dead"]
    if not args.quiet:  # (the quiet sink reports dead jobs itself)
        for job in dead[:20]:
            print(f"dead: {job.job_id} (row {job.row}): {job.error}", file=sys.stderr)
        if len(dead) > 20:
            print(f"... and {len(dead) - 20} more dead jobs; see `sonic-runner report`", file=sys.stderr)
    return code


def _print_stopped(batch, queued_hint: str) -> None:
    """The lines of a batch that stopped early: gave up on its hosts (one line per host) or hit a runner bug."""
    if batch.bug is not None:
        print(f"sonic-runner: {batch.bug}", file=sys.stderr)
    if batch.gave_up is not None:
        left = sum(1 for j in batch.jobs.values() if j.state not in ("done", "dead"))
        print(
            f"sonic-runner: no host could work for {batch.gave_up_after_s:.0f} s (--give-up-after "
            f"{batch.config.give_up_after:g}); {left} unfinished job(s){queued_hint}",
            file=sys.stderr,
        )
        for line in batch.gave_up:
            print(f"sonic-runner: host {line}; {HOST_HINT}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    _check_text_args(args)
    for name in ("image",) if args.text is not None else ("image", "audio"):
        path = getattr(args, name)
        if not path.is_file():
            raise ValueError(f"--{name} {path}: file not found; give an existing file")
    if args.host:
        _check_host_values([args.host], options=False)
    _check_out_dir(args.out, "-o")
    if args.host:
        return _run_on_host(args)
    return _run_embedded(args)


def _check_text_args(args: argparse.Namespace) -> None:
    """--text needs words and a text template; --voice goes with --text (both become --set values)."""
    from .text_jobs import check_source
    from .workflow import load_workflow

    if args.text is None:
        if args.voice is not None:
            raise ValueError("--voice: goes with --text (a clip given with --audio has its own voice)")
        return
    if not args.text.strip():
        raise ValueError("--text: empty; give the words the portrait should say")
    check_source(load_workflow(args.workflow), True)
    if args.voice is not None:
        args.sets = [*args.sets, ("voice", args.voice)]


def _speech_params(args: argparse.Namespace, template: dict, params: dict) -> dict:
    """The job's speech: the clip's path and real duration, or the text (duration from the speech)."""
    if args.text is not None:
        from .text_jobs import text_params

        notes: list[str] = []
        params = text_params(template, params, args.text, notes)
        for note in notes:
            print(f"sonic-runner: {note}", file=sys.stderr)
        return params
    from .probe import audio_duration
    from .workflow import WorkflowError, get_param

    try:
        get_param(template, "duration")
        params.setdefault("duration", round(audio_duration(args.audio), 3))
    except WorkflowError:
        pass
    return {**params, "audio": str(args.audio.resolve())}


def _check_out_dir(path: Path, flag: str) -> None:
    """The output folder exists (made here if missing) and is writable, before any work is done.

    Without this a bad -o surfaces minutes later as a bare errno or a FileExistsError traceback.
    """
    import os

    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file, not a folder; give a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"{flag} {path}: cannot create the folder ({exc.strerror or exc}); give a writable folder"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: the folder is not writable; give a writable folder")


def _check_host_values(values: list[str], *, options: bool) -> None:
    """A --host value is one URL (batch/hosts: then key=value options); refuse a space inside the URL.

    Otherwise `--host "http://gpu 1:8188"` reads as the URL "http://gpu" plus a stray word and ends
    in a puzzling "'1:8188' is not key=value" (or an unreachable host).
    """
    import shlex

    from .secrets import redact, safe_url

    for value in values:
        try:
            words = shlex.split(value)
        except ValueError:  # unbalanced quotes: parse_hosts names them
            continue
        stray = [w for w in words[1:] if not options or "=" not in w]
        if stray:
            then = (
                "followed by key=value options, e.g. 'http://gpu1:8188 name=gpu1'"
                if options
                else "(headers go in --header NAME=VALUE)"
            )
            raise ValueError(
                f"--host {safe_url(words[0])!r} {redact(stray[0])!r}: a host URL cannot contain spaces; "
                f"give the URL without spaces {then}"
            )


def _run_embedded(args: argparse.Namespace) -> int:
    from .workflow import apply_params, load_workflow

    template = load_workflow(args.workflow)
    params = _speech_params(args, template, dict(args.sets))
    prompt = apply_params(template, {**params, "image": str(args.image.resolve())})
    from . import display, embedded

    if args.jsonl:
        sink = display.JsonLinesSink(sys.stdout)
    elif args.quiet:
        sink = None  # only the output path is printed
    else:
        sink = display.NodeProgressDisplay()
    try:
        paths = embedded.run_embedded(prompt, args.out, sink, models_dir=args.models)
    except ImportError as exc:  # the runner-only install: no torch / engine libraries
        print(
            f"sonic-runner: running without --host needs the node pack's engine (missing: {exc.name}); "
            "pip install torch 'comfyui-sonic[nodes]', or render on a ComfyUI host with --host URL",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Exception as exc:
        from .host_errors import ENGINE_ERROR_NAMES

        if type(exc).__name__ not in ENGINE_ERROR_NAMES | {"WorkflowError"}:
            raise
        # The job failed the way a host's job fails (bad input, missing weights, OOM): one line, exit 1.
        print(f"sonic-runner: job failed: {exc}", file=sys.stderr)
        return EXIT_DEAD
    finally:
        _close([sink] if sink is not None else [])
    _print_outputs(args, [str(p) for p in paths])
    return EXIT_OK if paths else EXIT_DEAD


def _run_on_host(args: argparse.Namespace) -> int:
    import shlex
    import tempfile

    from .batch import Batch, BatchConfig, build_jobs, safe_job_id
    from .secrets import parse_hosts

    if any("=" not in h for h in args.header):
        raise ValueError("--header: expected NAME=VALUE (VALUE may be env:VAR)")
    words = [args.host]
    for header in args.header:
        name, _, value = header.partition("=")
        words.append(shlex.quote(f"header.{name.strip()}={value.strip()}"))
    line = " ".join(words)
    hosts = parse_hosts([line])
    give_up = args.give_up_after or min(args.timeout, 180.0)
    with tempfile.TemporaryDirectory(prefix="sonic-run-") as tmp:
        config = BatchConfig(
            workflow_path=args.workflow,
            out_dir=args.out,
            hosts=hosts,
            journal_path=Path(tmp) / "journal.sqlite",
            params=dict(args.sets),
            timeout=args.timeout,
            give_up_after=give_up,
            # one call may not outlast the give-up time (a black-holed address never answers)
            request_timeout=max(1.0, min(30.0, 0.75 * give_up)),
        )
        batch = Batch(config)
        from .workflow import load_workflow

        batch.template = load_workflow(args.workflow)
        from .journal import Journal
        from .secrets import redact

        batch.journal = Journal(config.journal_file(), redact=redact)
        row = {
            "row": 1,
            "id": safe_job_id(args.image.stem) or "job",
            "image": str(args.image.resolve()),
            **({"text": args.text} if args.text is not None else {"audio": str(args.audio.resolve())}),
            "params": {},
        }
        batch.add_jobs(build_jobs([row], batch.template, config.params))
        sinks, closers = _sinks(args)
        batch.sinks = sinks
        try:
            code = batch.run()
        finally:
            _close(closers)
            batch.journal.close()
    job = next(iter(batch.jobs.values()))
    if job.state == "done":
        _print_outputs(args, job.outputs)
    elif batch.gave_up is not None or batch.bug is not None:
        _print_stopped(batch, " not run")
    else:
        print(f"sonic-runner: job failed: {job.error}", file=sys.stderr)
    return code


def _print_outputs(args: argparse.Namespace, paths: list[str]) -> None:
    """The output file paths: one per line, or one JSON object in --jsonl mode (keeps stdout parseable)."""
    if getattr(args, "jsonl", False):
        import json

        print(json.dumps({"event": "outputs", "paths": paths}), flush=True)
    else:
        for path in paths:
            print(path)


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from .secrets import host_label

    counts, hosts, meta, where = _status_records(args)
    total = sum(counts.values())
    names = meta.get("host_names") or {}
    excluded = meta.get("excluded_hosts") or {}
    if args.json:
        print(
            json.dumps(
                {
                    "total": total,
                    "states": counts,
                    "hosts": hosts,
                    "host_names": names,
                    "excluded_hosts": excluded,
                    "workflow": meta.get("workflow_path"),
                    "out_dir": meta.get("out_dir"),
                },
                indent=2,
            )
        )
        return EXIT_OK
    print(f"{where}: {total} jobs  (workflow {meta.get('workflow_path')}, out {meta.get('out_dir')})")
    from .jobs import STATES

    print("  " + "  ".join(f"{s} {counts.get(s, 0)}" for s in STATES if counts.get(s)))
    for host, states in hosts.items():
        line = f"  {host_label(names.get(host), host)}: attempts " + ", ".join(
            f"{s} {n}" for s, n in sorted(states.items())
        )
        if host in excluded:
            line += f"; excluded (cannot run this workflow): {excluded[host]}"
        print(line)
    return EXIT_OK


def _status_records(args: argparse.Namespace) -> tuple[dict, dict, dict, str]:
    """(counts, attempts by host, meta, what it is) of a local journal or a fleet batch."""
    if args.db:
        jobs, attempts, meta = fleet_commands.fleet_records(args)
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.state] = counts.get(job.state, 0) + 1
        hosts: dict[str, dict[str, int]] = {}
        for a in attempts:
            hosts.setdefault(a["host"], {}).setdefault(a["state"], 0)
            hosts[a["host"]][a["state"]] += 1
        return counts, hosts, meta, f"batch {args.batch_name}"
    from .journal import open_existing

    if args.journal is None:
        raise ValueError("give the batch's journal file (local mode) or --db URL --batch NAME (fleet mode)")
    with open_existing(args.journal) as journal:
        return journal.counts(), journal.counts_by_host(), journal.meta(), f"journal {args.journal}"


def _report_records(args: argparse.Namespace) -> tuple[list, list, dict]:
    if args.db:
        return fleet_commands.fleet_records(args)
    from .journal import open_existing

    if args.journal is None:
        raise ValueError("give the batch's journal file (local mode) or --db URL --batch NAME (fleet mode)")
    with open_existing(args.journal) as journal:
        return journal.jobs(), journal.attempts(), journal.meta()


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from .report import build_report, render_table

    jobs, attempts, meta = _report_records(args)
    started = float(meta.get("created") or min((j.created_at for j in jobs), default=0.0))
    finished = max((j.finished_at or 0.0 for j in jobs), default=started) or started
    report = build_report(
        jobs,
        started,
        finished,
        attempts=attempts,
        host_names=meta.get("host_names") or {},
        excluded_hosts=meta.get("excluded_hosts") or {},
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_table(report))
    return EXIT_OK


def cmd_hosts(args: argparse.Namespace) -> int:
    """One line per host: reachable, ComfyUI version, missing nodes, model files, free VRAM."""
    import json

    from .hosts import check_hosts
    from .secrets import parse_hosts, redact_obj

    _check_host_values(args.hosts, options=True)
    specs = parse_hosts(args.hosts, args.hosts_file)
    if not specs:
        raise ValueError("hosts: give --host URL (repeatable) or --hosts-file FILE")
    reports = [
        redact_obj({**r.to_dict(), "name": s.name}) for s, r in zip(specs, check_hosts(specs), strict=True)
    ]
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print(render_hosts(reports))
    return EXIT_OK if all(r["ok"] for r in reports) else EXIT_DEAD


DEFAULT_DB = "sqlite:///sonic-data/jobs.sqlite"


def _db_url(value: str | None) -> str:
    url = value or DEFAULT_DB
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


def cmd_serve(args: argparse.Namespace) -> int:
    from .malloc_arenas import cap_malloc_arenas

    cap_malloc_arenas()  # before any thread starts: see the module for the measured reason
    import os

    import uvicorn

    from .api.app import create_app
    from .api.settings import ServeSettings

    if args.lease < 1:
        raise ValueError(
            "serve --lease must be at least 1 second (the worker renews it three times per lease)"
        )
    settings = ServeSettings(
        db_url=_db_url(args.db),
        storage=args.bucket,
        s3_endpoint=args.s3_endpoint,
        broker_url=args.broker,
        pools=args.pools,
        auth=not args.no_auth,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_audio_s=args.max_audio_s,
        lease_s=args.lease,
        allow_private_webhooks=args.allow_private_webhooks,
        webhook_secret=os.environ.get("SONIC_WEBHOOK_SECRET"),
    )
    if args.no_auth:
        print(
            "sonic-runner serve: WARNING: --no-auth: anyone who reaches "
            f"http://{args.bind}:{args.port} can submit and read jobs; use API keys beyond a laptop",
            file=sys.stderr,
        )
    app = create_app(settings)
    print(f"sonic-runner serve: listening on http://{args.bind}:{args.port} (docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.bind, port=args.port, log_level="warning")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from .capacity.plan import cmd_plan as plan

    return plan(args)


def cmd_keys(args: argparse.Namespace) -> int:
    from .store import JobStore
    from .store.api_keys import ApiKeys

    with JobStore(_db_url(args.db)) as store:
        keys = ApiKeys(store)
        if args.action == "create":
            if not args.name_or_id:
                raise ValueError("keys create NAME: give the key a name (who uses it)")
            key, secret = keys.create(
                args.name_or_id,
                max_queued=args.max_queued,
                per_minute=args.per_minute,
                objects_prefix=args.objects_prefix,
            )
            print(secret)
            print(
                f"key {key.key_id} ({key.name}) created; the secret above is shown only once", file=sys.stderr
            )
        elif args.action == "list":
            for key in keys.list():
                state = "active" if key.active else "revoked"
                where = f"\tobjects={key.objects_prefix}" if key.objects_prefix else ""
                limits = (f"{name}={value or 'unlimited'}" for name, value in
                          (("max_queued", key.max_queued), ("per_minute", key.per_minute)))  # fmt: skip
                print(f"{key.key_id}\t{key.name}\t{state}\t" + "\t".join(limits) + where)
        else:
            if not args.name_or_id:
                raise ValueError("keys revoke ID: give the key id (see keys list)")
            if not keys.revoke(args.name_or_id):
                raise ValueError(f"keys revoke {args.name_or_id}: no active key with that id (see keys list)")
            print(f"key {args.name_or_id} revoked")
    return EXIT_OK


def _add_templates_parser(sub) -> None:
    templates = sub.add_parser(
        "templates", help="workflows `serve` accepts by name: add, list, remove (kept in the job store)"
    )
    actions = templates.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_help = "job store (default sqlite:///sonic-data/jobs.sqlite)"
    add = actions.add_parser("add", help="register a workflow saved with 'Save (API)' under NAME")
    add.add_argument("name", help="template name clients send as `template` (e.g. shop_intro_fast)")
    add.add_argument("workflow", type=Path, help="the workflow file (*_api.json)")
    add.add_argument(
        "--tier", choices=("fast", "balanced", "hq"), help="its tier, if the name does not end in one"
    )
    add.add_argument("--replace", action="store_true", help="replace a template of that name")
    add.add_argument("--db", default=None, metavar="URL", help=db_help)
    listing = actions.add_parser("list", help="registered templates with their tiers and inputs")
    listing.add_argument("--db", default=None, metavar="URL", help=db_help)
    listing.add_argument("--json", action="store_true", help="print JSON")
    remove = actions.add_parser("remove", help="unregister a template (queued jobs keep their copy)")
    remove.add_argument("name")
    remove.add_argument("--db", default=None, metavar="URL", help=db_help)


def cmd_templates(args: argparse.Namespace) -> int:
    """Registered templates live in the job store's database, so every `serve` replica sees them."""
    import json

    from .api.settings import ServeSettings
    from .api.validation import template_names
    from .store import JobStore
    from .store.templates import Templates, load_template_file
    from .workflow import available_inputs

    with JobStore(_db_url(args.db)) as store:
        templates = Templates(store)
        if args.action == "add":
            workflow = load_template_file(args.workflow)
            shipped = set(template_names(ServeSettings()))
            record = templates.add(args.name, workflow, tier=args.tier, replace=args.replace, shipped=shipped)
            tier = f" (tier {record.tier})" if record.tier else ""
            print(f"template {record.name}{tier} registered from {args.workflow}")
        elif args.action == "list":
            records = templates.list()
            rows = [{"name": r.name, "tier": r.tier, "inputs": available_inputs(r.workflow)} for r in records]
            if args.json:
                print(json.dumps(rows, indent=2))
            else:
                for row in rows:
                    print(f"{row['name']}\t{row['tier'] or '-'}\t{', '.join(row['inputs'])}")
                print(f"{len(rows)} registered template(s)", file=sys.stderr)
        else:
            if not templates.remove(args.name):
                raise ValueError(f"templates remove {args.name}: no such template (see templates list)")
            print(f"template {args.name} removed")
    return EXIT_OK


def parse_age(text: str) -> float:
    """'7d' / '36h' / '90m' / '45s' -> seconds (a bare number is seconds)."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            return float(value[:-1]) * units[value[-1]]
        return float(value)
    except ValueError:
        raise ValueError(f"--older-than {text!r}: give a duration such as 7d, 36h or 90m") from None


def cmd_gc(args: argparse.Namespace) -> int:
    from .storage import gc, open_store

    store = open_store(args.bucket, s3_endpoint=args.s3_endpoint, default="sonic-data/objects")
    removed = gc(store, parse_age(args.older_than))
    print(f"removed {removed} object(s) older than {args.older_than} from {store.description}")
    return EXIT_OK


def cmd_dlq(args: argparse.Namespace) -> int:
    import json

    from .fleet import dlq

    if args.action == "list":
        dead = dlq.list_dead(args.broker)
        if args.json:
            print(json.dumps([d.__dict__ for d in dead], default=str, indent=2))
        else:
            for d in dead:
                print(f"{d.job_id or '?'}\t{d.queue or '?'}\t{d.reason}")
            print(f"{len(dead)} dead letter(s)", file=sys.stderr)
    elif args.action == "retry":
        print(f"re-published {dlq.retry_dead(args.broker)} dead letter(s) to their pool queues")
    else:
        print(f"purged {dlq.purge_dead(args.broker)} dead letter(s)")
    return EXIT_OK


def render_hosts(reports: list[dict]) -> str:
    """A plain table (it must read well in a CI log as well as in a terminal)."""
    from .secrets import host_label

    header = ("host", "ok", "version", "nodes", "models", "VRAM free/total GB", "error")
    rows = [header]
    for r in reports:
        vram = (
            f"{r['vram_free_gb']:.1f}/{r['vram_total_gb']:.1f}"
            if r.get("vram_free_gb") is not None and r.get("vram_total_gb") is not None
            else "-"
        )
        nodes = (
            "missing " + ",".join(r["missing_nodes"])
            if r.get("missing_nodes")
            else ("all" if r["ok"] else "-")
        )
        rows.append(
            (
                host_label(r.get("name"), r["url"]),
                "yes" if r["ok"] else "NO",
                r.get("comfyui_version") or "-",
                nodes,
                str(len(r.get("model_files") or [])),
                vram,
                r.get("error") or "",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
