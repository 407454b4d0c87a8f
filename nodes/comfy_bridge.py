"""Every touch point with ComfyUI itself, each optional.

The same node classes run inside ComfyUI and inside the runner's embedded
executor, where no `comfy`, `folder_paths` or `server` module exists. Each
function here tries the ComfyUI facility and falls back to something that
works without it, so node code never imports ComfyUI directly.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .engine.progress import NullProgress, Progress

MODEL_FOLDER = "sonic"
PACK_ROOT = Path(__file__).resolve().parent.parent

# Set by the embedded executor (runner) to show progress and choose the output dir.
_progress_factory: Callable[[int, str], Progress] | None = None
_output_dir: Path | None = None
_model_dirs: list[Path] = []
# Set by the embedded executor: IMAGE / AUDIO values between nodes as numpy arrays (see array_values).
_array_values = False


def _folder_paths() -> Any | None:
    try:
        import folder_paths  # type: ignore[import-not-found]
    except ImportError:
        return None
    return folder_paths


def register_model_folder() -> None:
    """Register models/sonic with ComfyUI so extra_model_paths.yaml entries keep working."""
    fp = _folder_paths()
    if fp is None:
        return
    path = os.path.join(fp.models_dir, MODEL_FOLDER)
    fp.add_model_folder_path(MODEL_FOLDER, path)


def install_example_inputs() -> None:
    """Copy the demo face and speech clip into ComfyUI's input folder (once, if absent).

    The templates name these files, so a template dragged into the editor runs
    as it is, without the user first hunting for a portrait and a clip.
    """
    fp = _folder_paths()
    if fp is None:
        return
    target = Path(fp.get_input_directory())
    for source in sorted((PACK_ROOT / "demo").glob("sonic_example_*")):
        destination = target / source.name
        if destination.exists():
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        except OSError as exc:  # a read-only input folder must not stop ComfyUI from loading the pack
            logging.getLogger(__name__).warning(
                "sonic: could not copy %s to %s: %s", source.name, target, exc
            )


def set_model_dirs(dirs: list[Path]) -> None:
    """Outside ComfyUI: the directories searched for model files (runner --models)."""
    _model_dirs[:] = [Path(d) for d in dirs]


def model_dirs(kind: str = MODEL_FOLDER) -> list[Path]:
    """Directories that may hold model files of `kind` ("sonic" or "checkpoints")."""
    fp = _folder_paths()
    found: list[Path] = []
    if fp is not None:
        try:
            found = [Path(p) for p in fp.get_folder_paths(kind)]
        except Exception:  # an unknown kind in an older ComfyUI
            found = []
    env = os.environ.get("SONIC_MODELS_DIR")
    extra = list(_model_dirs) + ([Path(env)] if env else [])
    if kind != MODEL_FOLDER:
        extra = [d.parent / kind for d in extra] + extra
    return found + [d for d in extra if d not in found]


def set_progress_factory(factory: Callable[[int, str], Progress] | None) -> None:
    global _progress_factory
    _progress_factory = factory


def progress(total: int, label: str = "") -> Progress:
    """A progress reporter: ComfyUI's bar (which also honours cancel) when present."""
    try:
        import comfy.utils  # type: ignore[import-not-found]

        return _ComfyProgress(comfy.utils.ProgressBar(total), total)
    except ImportError:
        pass
    if _progress_factory is not None:
        return _progress_factory(total, label)
    return NullProgress(total)


class _ComfyProgress:
    def __init__(self, bar: Any, total: int) -> None:
        self.bar = bar
        self.total = total
        # ComfyUI's bar sends nothing until the first update: show it (at 0) the moment work starts.
        start = getattr(bar, "update_absolute", None)
        if start is not None:
            start(0, total)

    def update(self, n: int = 1) -> None:
        self.bar.update(n)  # ComfyUI's update also raises on a user's cancel

    def check_cancel(self) -> None:
        throw_if_interrupted()


def throw_if_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException when the user pressed cancel."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


def set_array_values(on: bool) -> None:
    """The embedded executor: the IMAGE and AUDIO values our nodes make are numpy arrays, not torch.

    Inside ComfyUI they must be torch tensors (every other node expects them). The embedded
    executor runs only our nodes and its own LoadImage / LoadAudio twins, and all of them read
    numpy as well as torch; with arrays, a lite render never imports torch, which costs most of
    a second of start-up, as much as rendering a few seconds of a 512 clip on two cores.
    """
    global _array_values
    _array_values = bool(on)


def array_values() -> bool:
    """True when IMAGE / AUDIO values are to be numpy arrays (the embedded executor), else torch."""
    return _array_values


def set_output_dir(path: Path | None) -> None:
    global _output_dir
    _output_dir = Path(path) if path is not None else None


def output_dir() -> Path:
    fp = _folder_paths()
    if fp is not None:
        return Path(fp.get_output_directory())
    if _output_dir is not None:
        return _output_dir
    return Path.cwd() / "output"


def frames_dir() -> Path:
    """Where frame stores go: $SONIC_FRAMES_DIR, else ComfyUI's temp folder (ComfyUI empties it on
    start, so a killed server leaves nothing behind), else the system temp folder."""
    env = os.environ.get("SONIC_FRAMES_DIR")
    if env:
        return Path(env)
    fp = _folder_paths()
    if fp is not None:
        try:
            return Path(fp.get_temp_directory())
        except Exception:  # an older ComfyUI without a temp folder
            pass
    import tempfile

    return Path(tempfile.gettempdir())


def save_path(filename_prefix: str, width: int, height: int) -> tuple[Path, str, str]:
    """(folder, base filename, subfolder) for a new output, ComfyUI-style counter included."""
    fp = _folder_paths()
    if fp is not None:
        folder, name, counter, subfolder, _ = fp.get_save_image_path(
            filename_prefix, fp.get_output_directory(), width, height
        )
        return Path(folder), f"{name}_{counter:05}_", subfolder
    root = output_dir().resolve()
    prefix = Path(filename_prefix)
    folder = (root / prefix.parent).resolve()
    if not folder.is_relative_to(root):  # ComfyUI's get_save_image_path refuses this too
        from .engine.errors import SonicInputError

        raise SonicInputError(
            "filename_prefix",
            f"{filename_prefix!r} leaves the output folder",
            "use a relative name such as sonic/clip",
        )
    folder.mkdir(parents=True, exist_ok=True)
    stem = prefix.name
    counter = 1 + max(
        (
            int(p.stem[len(stem) + 1 : len(stem) + 6])
            for p in folder.glob(f"{stem}_?????_*")
            if p.stem[len(stem) + 1 : len(stem) + 6].isdigit()
        ),
        default=0,
    )
    subfolder = str(prefix.parent) if str(prefix.parent) != "." else ""
    return folder, f"{stem}_{counter:05}_", subfolder


def torch_device(choice: str) -> str:
    """`auto` means ComfyUI's own device choice (so --cpu and --cuda-device are honoured) inside ComfyUI."""
    if choice != "auto":
        return choice
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except ImportError:
        return choice
    return str(mm.get_torch_device())


def managed_model(module: Any, load_device: Any, offload_device: Any) -> ComfyManagedModel | None:
    """Put a plain torch module under ComfyUI's memory management (None outside ComfyUI).

    ComfyUI frees memory for a new model by unloading the models it knows, and it
    knows only ModelPatcher entries (as its CLIP vision model is a ModelPatcher over
    a plain torch module). Wrapped this way our networks make room before a run and
    are moved to `offload_device` when another node later needs the memory.
    The caller must keep the returned handle: ComfyUI holds its models weakly.
    """
    try:
        import comfy.model_management  # type: ignore[import-not-found]  # noqa: F401
        import comfy.model_patcher  # type: ignore[import-not-found]
    except ImportError:
        return None
    patcher = comfy.model_patcher.ModelPatcher(module, load_device=load_device, offload_device=offload_device)
    return ComfyManagedModel(patcher)


class ComfyManagedModel:
    """One model registered with ComfyUI: load before a run, unload like any other model."""

    def __init__(self, patcher: Any) -> None:
        self.patcher = patcher

    def load(self, memory_required: int) -> None:
        """Free other models until ours plus `memory_required` bytes fit, then load ours."""
        import comfy.model_management as mm  # type: ignore[import-not-found]

        # Fully: ComfyUI's partial (lowvram) loading leaves plain torch layers on the
        # offload device, and only its own comfy.ops layers can run from there.
        mm.load_models_gpu([self.patcher], memory_required=memory_required, force_full_load=True)

    def offload(self) -> None:
        """Unload our model now, as ComfyUI's free_memory would, and drop it from its list."""
        import comfy.model_management as mm  # type: ignore[import-not-found]

        loaded = mm.current_loaded_models
        for i in reversed(range(len(loaded))):
            if loaded[i].model is self.patcher:
                loaded[i].model_unload()
                loaded.pop(i)
        mm.soft_empty_cache()

    def after_out_of_memory(self) -> None:
        """What ComfyUI does after an out-of-memory error it sees (ours it sees as a Sonic error)."""
        import comfy.model_management as mm  # type: ignore[import-not-found]

        mm.unload_all_models()
        mm.soft_empty_cache()


def soft_empty_cache() -> None:
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]

        mm.soft_empty_cache()
    except ImportError:
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
