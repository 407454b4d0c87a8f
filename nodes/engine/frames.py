"""Frame sources: how a clip travels between our nodes (the SONIC_FRAMES type) without ever
being held whole as float32 in memory.

A ComfyUI IMAGE is one float32 tensor of the whole clip: a minute at 768 is 5 GB per copy, and
every node that touches it makes another. Our nodes hand each other a FrameSource instead: the
clip's shape, fps, audio and where the face is, plus a way to read the frames as uint8 chunks of
a few frames, in order. Three kinds:

- ReplaySource: frames computed when they are read (the lite backend re-renders them from the
  portrait and the seed, which is cheap and deterministic; an IMAGE input is converted a chunk at a
  time). Nothing is stored, so nothing can be left behind.
- FrameStore: uint8 frames in one raw file in a temporary folder (the sonic backend: a render that
  took minutes is never repeated). Read with plain file reads, not mmap, so the pages count
  against the kernel's page cache, not the process's memory. The folder is removed when the store
  is garbage collected (ComfyUI drops a cached output when its node runs again), when the process
  exits, and - for a killed process - by the next process that creates a store (stale folders are
  named after a pid that no longer runs).
- RemappedSource: another source seen through a frame index map (a lip-sync shift) and an
  optional deflicker, evaluated lazily while it is read.

Reading ahead on a worker thread (`prefetched`) lets a consumer (the encoder) work while the
producer (the lite renderer, disk reads) makes the next chunk, on another core.
"""

from __future__ import annotations

import errno
import os
import queue
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import SonicStorageError
from .progress import Progress
from .types import Audio, Box

CHUNK = 16  # frames per chunk: a 1024p chunk is 50 MB as uint8
STORE_PREFIX = "sonic-frames-"
ENV_DIR = "SONIC_FRAMES_DIR"
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True)
class ClipInfo:
    """What a consumer needs to know about a clip besides its pixels."""

    width: int
    height: int
    count: int
    fps: float
    audio: Audio | None = None  # the soundtrack the frames were made for
    face_box: Box | None = None  # the face in frame coordinates (None: unknown, detect it)
    landmarks: np.ndarray | None = None  # [68, 2] of the still portrait in frame coordinates
    in_sync: bool = False  # timing exact by construction (lite): no lip-sync offset to measure
    origin: str = "IMAGE"  # who made the frames, for messages ("lite", "sonic", "IMAGE")

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3


class FrameSource:
    """A clip as uint8 RGB chunks [n, H, W, 3], read in order (see the module docstring)."""

    def __init__(self, info: ClipInfo) -> None:
        self.info = info

    def __len__(self) -> int:
        return self.info.count

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.info.count, self.info.height, self.info.width, 3)

    def chunks(self) -> Iterator[np.ndarray]:
        """Every frame once, in order, in chunks of at most CHUNK frames: exactly `count` frames."""
        made = 0
        for chunk in self._chunks():
            chunk = chunk[: self.info.count - made]
            if len(chunk):
                made += len(chunk)
                yield chunk
            if made >= self.info.count:
                return
        if made != self.info.count:
            raise RuntimeError(
                f"{self.info.origin} frames: produced {made} frames, expected {self.info.count}"
            )

    def _chunks(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Frame after frame ([H, W, 3] views into chunks read ahead on a worker thread)."""
        for chunk in prefetched(self.chunks()):
            yield from chunk

    def with_info(self, **changes) -> FrameSource:
        """The same frames with other metadata (audio, fps, ...)."""
        return _Relabelled(self, replace(self.info, **changes))

    def __repr__(self) -> str:
        i = self.info
        return f"<{type(self).__name__} {i.origin} {i.count} frames {i.width}x{i.height} at {i.fps:g} fps>"


class _Relabelled(FrameSource):
    def __init__(self, base: FrameSource, info: ClipInfo) -> None:
        super().__init__(info)
        self.base = base

    def _chunks(self) -> Iterator[np.ndarray]:
        return self.base.chunks()


class ReplaySource(FrameSource):
    """Frames computed when read: `start()` returns a fresh iterator of uint8 chunks each time.

    `first` is an iterator already started (the caller ran the set-up, so its errors were raised
    where the user sees them); the first read uses it, later reads call `start()` again.
    """

    def __init__(
        self, info: ClipInfo, start: Callable[[], Iterator[np.ndarray]], first: Iterator | None = None
    ) -> None:
        super().__init__(info)
        self._start = start
        self._first = first

    def _chunks(self) -> Iterator[np.ndarray]:
        first, self._first = self._first, None
        return first if first is not None else self._start()


def array_source(frames: np.ndarray, fps: float, audio: Audio | None = None, **info) -> ReplaySource:
    """uint8 frames already in memory [N, H, W, 3] as a source (views, no copy)."""
    n, h, w = frames.shape[:3]

    def start() -> Iterator[np.ndarray]:
        for i in range(0, n, CHUNK):
            yield frames[i : i + CHUNK]

    return ReplaySource(ClipInfo(int(w), int(h), int(n), float(fps), audio=audio, **info), start)


class FrameStore(FrameSource):
    """uint8 frames in a raw file inside a temporary folder (written by FrameStoreWriter)."""

    def __init__(self, info: ClipInfo, folder: Path) -> None:
        super().__init__(info)
        self.folder = folder
        self.path = folder / "frames.rgb"
        self._finalizer = weakref.finalize(self, _remove_folder, str(folder))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as one array (a few frames: memory is stop - start frames)."""
        start, stop = max(0, start), min(self.info.count, stop)
        out = np.empty((max(0, stop - start), self.info.height, self.info.width, 3), dtype=np.uint8)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(start * self.info.frame_bytes)
            _read_exactly(f, out, self.path)
        return out

    def _chunks(self) -> Iterator[np.ndarray]:
        size = self.info.frame_bytes
        with open(self.path, "rb", buffering=0) as f:
            for start in range(0, self.info.count, CHUNK):
                n = min(CHUNK, self.info.count - start)
                out = np.empty((n, self.info.height, self.info.width, 3), dtype=np.uint8)
                f.seek(start * size)
                _read_exactly(f, out, self.path)
                yield out

    def release(self) -> None:
        """Remove the files now (they also go when the store is garbage collected)."""
        self._finalizer()

    @property
    def released(self) -> bool:
        return not self._finalizer.alive


def _read_exactly(f, out: np.ndarray, path: Path) -> None:
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise SonicStorageError(
                str(path.parent), f"the frame store {path} is shorter than expected (was it deleted?)"
            )
        got += n


class FrameStoreWriter:
    """Writes a FrameStore chunk by chunk; use as a context manager.

    Any failure (disk full, cancel, a backend error) removes the folder; `finish()` returns the
    store. The space the whole clip needs is checked before the first frame is written, so a
    render is not lost to a full disk minutes in.
    """

    def __init__(self, width: int, height: int, expected_frames: int, root: str | Path | None = None) -> None:
        self.width, self.height = int(width), int(height)
        self.expected = int(expected_frames)
        self.root = Path(root) if root is not None else default_root()
        self.folder = _new_folder(self.root, self.expected * self.width * self.height * 3)
        self.path = self.folder / "frames.rgb"
        self.count = 0
        self._file = None
        self._done = False
        try:
            self._file = open(self.path, "wb")
        except OSError as exc:
            self.abort()
            raise _storage_error(self.root, exc, "creating the frame store") from exc

    def __enter__(self) -> FrameStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, chunk: np.ndarray) -> None:
        arr = np.ascontiguousarray(chunk, dtype=np.uint8)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.shape[1:] != (self.height, self.width, 3):
            self.abort()
            raise RuntimeError(
                f"frame chunk of shape {list(arr.shape)} does not match the store's {self.width}x{self.height}"
            )
        try:
            self._file.write(memoryview(arr).cast("B"))
        except OSError as exc:
            self.abort()
            raise _storage_error(self.root, exc, f"storing frame {self.count + 1}") from exc
        self.count += len(arr)

    def finish(self, info: ClipInfo) -> FrameStore:
        """Close the file; the store's count is what was written (info's size must match)."""
        try:
            self._file.close()
        except OSError as exc:
            self.abort()
            raise _storage_error(self.root, exc, "closing the frame store") from exc
        self._done = True
        return FrameStore(replace(info, width=self.width, height=self.height, count=self.count), self.folder)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        _remove_folder(str(self.folder))


def default_root() -> Path:
    """Where frame stores go outside ComfyUI: $SONIC_FRAMES_DIR, else the system temp folder."""
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else Path(tempfile.gettempdir())


def _new_folder(root: Path, need_bytes: int) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        sweep_stale(root)
        free = shutil.disk_usage(root).free
    except OSError as exc:
        raise _storage_error(root, exc, "opening the temp folder") from exc
    if free < need_bytes:
        need, have = _sizes(need_bytes, free)
        raise SonicStorageError(
            str(root),
            f"needs {need} for the frames but has {have} free",
            f"free space there or set {ENV_DIR} to a folder with more room",
        )
    folder = root / f"{STORE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        folder.mkdir()
    except OSError as exc:
        raise _storage_error(root, exc, "creating a folder for the frames") from exc
    return folder


def _sizes(need: int, free: int) -> tuple[str, str]:
    """Both sizes in the largest unit that tells them apart ("9.8 MB" / "6.0 MB", not "0.0 GB")."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if need >= scale:
            a, b = f"{need / scale:.1f} {unit}", f"{free / scale:.1f} {unit}"
            if a != b:
                return a, b
    return f"{need} bytes", f"{free} bytes"


def _storage_error(root: Path, exc: OSError, doing: str) -> SonicStorageError:
    if exc.errno in _SPACE_ERRNOS:
        return SonicStorageError(
            str(root),
            f"ran out of space while {doing} ({exc.strerror})",
            f"free space there or set {ENV_DIR} to a folder with more room",
        )
    return SonicStorageError(
        str(root),
        f"is not usable for the frames ({doing}: {exc.strerror or exc})",
        f"make it writable or set {ENV_DIR} to a writable folder",
    )


def _remove_folder(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def live_stores(root: str | Path | None = None) -> list[Path]:
    """This process's frame-store folders under `root` (for tests and diagnostics)."""
    base = Path(root) if root is not None else default_root()
    return sorted(base.glob(f"{STORE_PREFIX}{os.getpid()}-*"))


def sweep_stale(root: Path) -> None:
    """Remove the stores of processes that no longer run (a killed ComfyUI or runner)."""
    for folder in root.glob(f"{STORE_PREFIX}*-*"):
        pid = folder.name[len(STORE_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            _remove_folder(str(folder))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RemappedSource(FrameSource):
    """`base` read through a monotone index map (output frame i shows base frame indices[i]),
    optionally deflickered; computed while read, so nothing is stored."""

    def __init__(
        self,
        base: FrameSource,
        indices: np.ndarray,
        smoothing: float = 0.0,
        mouth_boxes: list[Box | None] | None = None,
        info: ClipInfo | None = None,
        cancel: Progress | None = None,
    ) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (np.any(np.diff(indices) < 0) or indices[0] < 0 or indices[-1] >= len(base)):
            raise ValueError("indices must be non-decreasing frame numbers of the base clip")
        super().__init__(info or replace(base.info, count=len(indices)))
        self.base = base
        self.indices = indices
        self.smoothing = float(smoothing)
        self.mouth_boxes = mouth_boxes
        self.cancel = cancel  # checked between chunks (a long deflicker stays cancellable)

    def _chunks(self) -> Iterator[np.ndarray]:
        frames = _pick(self.base.chunks(), self.indices)
        if self.smoothing > 0:
            from .lipsync import deflicker

            frames = deflicker(frames, self.smoothing, self.mouth_boxes)
        for chunk in _rechunk(frames, self.info):
            if self.cancel is not None:
                self.cancel.check_cancel()
            yield chunk


def _pick(chunks: Iterator[np.ndarray], indices: np.ndarray) -> Iterator[np.ndarray]:
    """Frames base[indices[0]], base[indices[1]], ... streaming through the base once."""
    chunk: np.ndarray | None = None
    start = 0  # base index of chunk[0]
    for idx in indices:
        while chunk is None or idx >= start + len(chunk):
            if chunk is not None:
                start += len(chunk)
            chunk = next(chunks)
        yield chunk[idx - start]


def _rechunk(frames: Iterator[np.ndarray], info: ClipInfo) -> Iterator[np.ndarray]:
    buf = np.empty((CHUNK, info.height, info.width, 3), dtype=np.uint8)
    n = 0
    for frame in frames:
        buf[n] = frame
        n += 1
        if n == CHUNK:
            yield buf.copy()
            n = 0
    if n:
        yield buf[:n].copy()


class _Stop(Exception):
    pass


def prefetched(chunks: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """The same chunks, produced on a worker thread up to `depth` ahead of the consumer.

    numpy, OpenCV, file reads and the lite renderer release the GIL, so the producer's work
    overlaps the consumer's (the encoder's) on a second core. Closing the generator (the
    consumer stopped, e.g. on cancel) stops the producer after its current chunk.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(item) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def produce() -> None:
        try:
            for chunk in chunks:
                put(chunk)
            put(end)
        except _Stop:
            pass
        except BaseException as exc:  # handed to the consumer, raised there
            try:
                put(exc)
            except _Stop:
                pass
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

    worker = threading.Thread(target=produce, name="sonic-frames-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
