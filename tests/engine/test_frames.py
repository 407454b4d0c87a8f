"""Frame sources: clips handed between nodes as uint8 chunks, stored on disk or made when read."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from comfyui_sonic.nodes.engine.errors import SonicStorageError
from comfyui_sonic.nodes.engine.frames import (
    CHUNK,
    ClipInfo,
    FrameStoreWriter,
    RemappedSource,
    array_source,
    live_stores,
    prefetched,
    sweep_stale,
)


def clip(n: int = 40, h: int = 24, w: int = 32) -> np.ndarray:
    """Frames whose pixels say which frame they are (frame i is all i)."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, h, w, 3)).copy()


def store_of(frames: np.ndarray, root, **info):
    n, h, w = frames.shape[:3]
    with FrameStoreWriter(w, h, n, root=root) as writer:
        for i in range(0, n, 7):  # chunk sizes need not match the store's reading chunks
            writer.write(frames[i : i + 7])
        return writer.finish(ClipInfo(w, h, n, 25.0, **info))


def test_a_store_reads_back_every_frame_in_chunks(tmp_path):
    frames = clip()
    store = store_of(frames, tmp_path, face_box=(1, 2, 3, 4))
    chunks = list(store.chunks())
    assert all(len(c) <= CHUNK for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), frames)
    np.testing.assert_array_equal(store.read(5, 9), frames[5:9])
    assert store.info.count == 40 and store.info.face_box == (1, 2, 3, 4)
    assert store.path.stat().st_size == frames.nbytes  # uint8, nothing else


def test_a_store_is_removed_when_nothing_refers_to_it(tmp_path):
    store = store_of(clip(), tmp_path)
    folder = store.folder
    assert folder.is_dir() and live_stores(tmp_path) == [folder]
    del store
    gc.collect()
    assert not folder.exists() and live_stores(tmp_path) == []


def test_a_failed_write_leaves_no_files(tmp_path):
    with pytest.raises(RuntimeError, match="backend broke"):
        with FrameStoreWriter(32, 24, 40, root=tmp_path) as writer:
            writer.write(clip(8))
            raise RuntimeError("backend broke")  # or the user's cancel
    assert list(tmp_path.iterdir()) == []


def test_a_temp_folder_that_cannot_be_made_is_one_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SonicStorageError) as excinfo:
        FrameStoreWriter(32, 24, 40, root=blocker / "frames")
    message = str(excinfo.value)
    assert message.startswith(f"{blocker / 'frames'}: ") and "SONIC_FRAMES_DIR" in message
    assert "\n" not in message


def test_a_clip_larger_than_the_free_space_is_refused_before_any_frame(tmp_path):
    with pytest.raises(SonicStorageError, match=r"needs .* GB for the frames but has .* GB free"):
        FrameStoreWriter(100_000, 100_000, 100_000, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "need_frames, free, said",
    [
        # 2 s of 256 px sonic frames (9.8 MB), 6 MB free: this said "needs 0.0 GB ... has 0.0 GB free"
        (50, 6_000_000, r"needs 9\.8 MB for the frames but has 6\.0 MB free"),
        (20_000, 2_500_000_000, r"needs 3\.9 GB for the frames but has 2\.5 GB free"),
        # a few frames short of a big clip: the sizes still differ where they are shown
        (13_230, 2_600_000_000, r"needs 2601\.1 MB for the frames but has 2600\.0 MB free"),
    ],
)
def test_the_space_message_gives_sizes_a_user_can_compare(tmp_path, monkeypatch, need_frames, free, said):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 0, free))
    with pytest.raises(SonicStorageError, match=said):
        FrameStoreWriter(256, 256, need_frames, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_running_out_of_space_while_storing_is_one_error_and_removes_the_store(tmp_path):
    # A real refusal by the kernel: a file-size limit (EFBIG, what a full quota or disk looks
    # like to the writer) in a child process, so this test's own files are not limited.
    script = textwrap.dedent(
        f"""
        import resource, signal
        import numpy as np
        from comfyui_sonic.nodes.engine.frames import FrameStoreWriter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        with FrameStoreWriter(64, 64, 100, root={str(tmp_path)!r}) as w:
            for _ in range(100):
                w.write(np.zeros((1, 64, 64, 3), np.uint8))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "SonicStorageError" in last and str(tmp_path) in last and "ran out of space" in last
    assert list(tmp_path.iterdir()) == []


def test_stores_of_a_process_that_died_are_swept(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"sonic-frames-{dead.stdout.strip()}-abc"
    stale.mkdir()
    (stale / "frames.rgb").write_bytes(b"x" * 10)
    mine = store_of(clip(4), tmp_path)
    sweep_stale(tmp_path)
    assert not stale.exists() and mine.folder.exists()


def test_a_remapped_source_shifts_and_holds_the_ends(tmp_path):
    frames = clip(20)
    base = store_of(frames, tmp_path)
    indices = np.clip(np.arange(25) + 3, 0, 19)  # 3 frames earlier, 5 more frames than the base
    out = np.concatenate(list(RemappedSource(base, indices).chunks()))
    np.testing.assert_array_equal(out, frames[indices])
    with pytest.raises(ValueError):
        RemappedSource(base, np.array([3, 2, 1]))


def test_an_array_source_relabelled_keeps_its_frames():
    frames = clip(10)
    source = array_source(frames, 25.0).with_info(fps=30.0)
    assert source.info.fps == 30.0 and len(source) == 10
    np.testing.assert_array_equal(np.concatenate(list(source.chunks())), frames)


def test_prefetching_keeps_order_and_hands_on_the_producers_error():
    def produce():
        yield from (np.full(3, i) for i in range(5))
        raise ValueError("producer failed")

    got = []
    with pytest.raises(ValueError, match="producer failed"):
        for chunk in prefetched(produce()):
            got.append(int(chunk[0]))
    assert got == [0, 1, 2, 3, 4]


def test_a_consumer_that_stops_early_stops_the_producer():
    made = []

    def produce():
        for i in range(1000):
            made.append(i)
            yield i

    reader = prefetched(produce(), depth=2)
    assert next(reader) == 0
    reader.close()
    assert len(made) <= 5
