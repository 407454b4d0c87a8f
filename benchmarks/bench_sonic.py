"""Benchmark the sonic backend: seconds and peak VRAM per clip, per stage.

Full-size Sonic networks with random weights (compute and memory do not depend
on the values), bf16 + PyTorch SDPA, built directly on the GPU:

    python benchmarks/bench_sonic.py                       # 10 s clip, 512 and 1024, RIFE on/off
    python benchmarks/bench_sonic.py --durations 10 60     # is the peak the same for 60 s?
    python benchmarks/bench_sonic.py --compile             # torch.compile the UNet
    python benchmarks/bench_sonic.py --tiny                # CPU smoke run of the same code path

Prints measured numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _import_pack():
    try:
        import comfyui_sonic  # noqa: F401  (pip install -e .)
    except ImportError:  # a plain checkout: load the root as the package, as tests/conftest.py does
        sys.path.insert(0, str(ROOT / "tests"))
        import conftest  # noqa: F401

    from comfyui_sonic.nodes.engine.progress import NullProgress
    from comfyui_sonic.nodes.engine.sonic.backend import SonicBackend
    from comfyui_sonic.nodes.engine.sonic.random_checkpoint import random_models, random_prepared_data
    from comfyui_sonic.nodes.engine.sonic.timing import StageTimes
    from comfyui_sonic.nodes.engine.types import GenerationParams

    return NullProgress, SonicBackend, random_models, random_prepared_data, StageTimes, GenerationParams


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny config on the CPU (proves the script runs)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=None, help="min_resolution tiers")
    parser.add_argument("--durations", type=float, nargs="+", default=None, help="clip lengths in seconds")
    parser.add_argument("--steps", type=int, default=None, help="inference steps (default 25; tiny 3)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (first run = warm-up)")
    parser.add_argument("--no-rife-compare", action="store_true", help="only run with RIFE")
    args = parser.parse_args()

    NullProgress, SonicBackend, random_models, random_prepared_data, StageTimes, GenerationParams = (
        _import_pack()
    )
    from comfyui_sonic.nodes.engine.sonic.backend import DTYPES

    if args.tiny:
        device = torch.device("cpu")
        config, dtype = "tiny", torch.float32
        resolutions = args.resolutions or [64, 128]
        durations = args.durations or [2.0]
        steps = args.steps or 3
    else:
        if not torch.cuda.is_available():
            sys.exit("bench_sonic: no CUDA device; use --tiny for a CPU run")
        device = torch.device("cuda")
        config, dtype = "full", DTYPES[args.dtype]
        resolutions = args.resolutions or [512, 1024]
        durations = args.durations or [10.0]
        steps = args.steps or 25
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device: {gpu}; torch {torch.__version__}; config {config}; dtype {dtype}; steps {steps}")
    t0 = time.perf_counter()
    models = random_models(config, seed=0, device=str(device), rife=True)
    backend = SonicBackend(models, device, dtype)
    rife_net = models.rife
    if args.compile:
        models.unet = torch.compile(models.unet)
    if device.type == "cuda":
        torch.cuda.synchronize()
        weights_gib = torch.cuda.memory_allocated() / 2**30
        print(
            f"built random models in {time.perf_counter() - t0:.1f} s; weights on GPU {weights_gib:.2f} GiB"
        )
    else:
        print(f"built random models in {time.perf_counter() - t0:.1f} s")

    rife_modes = [True] if args.no_rife_compare else [True, False]
    params = GenerationParams(seed=0, inference_steps=steps, fps=25.0)
    header = f"{'res':>5} {'audio s':>7} {'rife':>5} {'frames':>6} {'total s':>8} {'peak GiB':>9}  stages (s)"
    print(header)
    warmed = not args.compile
    for res in resolutions:
        for duration in durations:
            data = random_prepared_data(duration, res, min_resolution=res)
            for rife in rife_modes:
                models.rife = rife_net if rife else None
                if not warmed:  # compile warm-up, not reported
                    t = time.perf_counter()
                    sum(c.shape[0] for c in backend.generate(data, params, NullProgress()))
                    print(f"  (torch.compile warm-up at {res}: {time.perf_counter() - t:.1f} s)")
                    warmed = True
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                timer = StageTimes(device)
                t = time.perf_counter()
                frames = sum(
                    c.shape[0] for c in backend.generate(data, params, NullProgress(), timings=timer)
                )
                total = time.perf_counter() - t
                peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
                stages = ", ".join(f"{k} {v:.2f}" for k, v in timer.seconds.items())
                print(
                    f"{res:>5} {duration:>7.1f} {str(rife):>5} {frames:>6} {total:>8.2f} {peak:>9.2f}  {stages}"
                )
            if args.compile:
                warmed = False  # a new resolution recompiles


if __name__ == "__main__":
    main()
