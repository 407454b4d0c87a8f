"""The `lite` backend: a talking head from one portrait on a CPU, faster than real time.

Per clip: the speech becomes a mouth track (audio_drive), the seed becomes a
performance of blinks, head motion and brows (motion), and the portrait's
landmarks become a rig (warp). Per frame: one dense map, one cv2.remap of the
portrait, and the inner mouth painted where the lips part (mouth). Frames are
produced in small uint8 chunks so memory stays flat however long the clip.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from ..errors import SonicInputError
from ..face import FaceAnalyzer, default_analyzer
from ..progress import Progress
from ..types import GenerationParams, SonicData
from .audio_drive import MouthTrack, mouth_track
from .motion import MotionTrack, plan_motion
from .mouth import MouthColours, mouth_colours, paint_mouth, shade_seam
from .warp import FacePose, FaceRig

CHUNK_FRAMES = 16

# Mouth amplitudes at dynamic_scale 1, in mouth half-widths (see warp.FacePose).
_JAW = 0.62
_LIP_RAISE = 0.12
_SPREAD = 0.10
_PURSE = 0.16


def closing_for(source_gap: float, opening: float) -> float:
    """How far to pull the lower lip up, at `opening` (0..1), for a portrait whose lips are
    `source_gap` apart.

    Shut (opening 0), a little more than the gap: the lips press together and the lower lip
    covers the edge of the portrait's teeth, which would otherwise show as a bright line along
    the seam. The extra fades out as the mouth opens, so it does not eat into the opening."""
    if source_gap <= 0.0:
        return 0.0
    return source_gap + (0.2 * source_gap + 0.08) * max(0.0, 1.0 - 4.0 * float(opening))


def pose_at(
    i: int, mouth: MouthTrack, motion: MotionTrack, dynamic_scale: float, source_gap: float = 0.0
) -> FacePose:
    """Frame i's expression: mouth from the audio, the rest from the seeded motion plan.

    The audio sets how far apart the lips are; a portrait whose lips are already apart
    (`source_gap`) starts from there, so it closes in silence.
    """
    o = float(mouth.open[i])
    wide = float(mouth.wide[i])
    spread, rounded = max(wide, 0.0), max(-wide, 0.0)
    talking = min(1.0, 3.0 * o)
    ds = float(dynamic_scale)
    return FacePose(
        jaw=ds * _JAW * o * (1.0 - 0.3 * rounded) - closing_for(source_gap, o),
        lip_raise=ds * (_LIP_RAISE * o + 0.05 * spread * talking),
        width=ds * talking * (_SPREAD * spread - _PURSE * rounded),
        roundness=rounded,
        blink=float(motion.blink[i]),
        brow=float(motion.brow[i]),
        head=tuple(float(v) for v in motion.head[i]),
    )


class LiteBackend:
    """Landmark-driven 2D animation (see the module docstring)."""

    name = "lite"

    def __init__(self, chunk_frames: int = CHUNK_FRAMES, analyzer: FaceAnalyzer | None = None) -> None:
        self.chunk_frames = max(1, int(chunk_frames))
        self._analyzer = analyzer

    def progress_total(self, data: SonicData, params: GenerationParams) -> int:
        return data.frame_count(params.fps)

    def generate(self, data: SonicData, params: GenerationParams, progress: Progress) -> Iterator[np.ndarray]:
        """uint8 chunks [n, H, W, 3]; set-up errors are raised here, before the first chunk."""
        if not params.fps > 0:
            raise SonicInputError("fps", f"must be positive, got {params.fps}", "use 25 (the usual rate)")
        n = data.frame_count(params.fps)
        landmarks = self._landmarks(data)
        rig = FaceRig(data.image.shape[:2], landmarks, data.image)
        mouth = mouth_track(data.audio_16k, params.fps, n)
        motion = plan_motion(n, params.fps, params.seed, params.motion_scale, mouth.emphasis)
        colours = mouth_colours(data.image, landmarks, rig.source_mouth_open)
        image = np.ascontiguousarray(data.image)
        return self._frames(image, rig, mouth, motion, colours, params.dynamic_scale, n, progress)

    def _frames(
        self,
        image: np.ndarray,
        rig: FaceRig,
        mouth: MouthTrack,
        motion: MotionTrack,
        colours: MouthColours,
        dynamic_scale: float,
        n: int,
        progress: Progress,
    ) -> Iterator[np.ndarray]:
        h, w = image.shape[:2]
        for start in range(0, n, self.chunk_frames):
            progress.check_cancel()
            count = min(self.chunk_frames, n - start)
            chunk = np.empty((count, h, w, 3), dtype=np.uint8)
            for j in range(count):
                pose = pose_at(start + j, mouth, motion, dynamic_scale, rig.source_gap)
                render_frame(image, rig, pose, colours, out=chunk[j])
            progress.update(count)
            yield chunk

    def _landmarks(self, data: SonicData) -> np.ndarray:
        if data.landmarks is not None:
            return np.asarray(data.landmarks, dtype=np.float32)
        analyzer = self._analyzer or default_analyzer()
        boxes = analyzer.detect(data.image)
        if not boxes:
            raise SonicInputError(
                "image", "no face found in the prepared image", "use a portrait with one clearly visible face"
            )
        return analyzer.landmarks(data.image, boxes[0])


def render_frame(
    image: np.ndarray, rig: FaceRig, pose: FacePose, colours: MouthColours, out: np.ndarray | None = None
) -> np.ndarray:
    """One frame: remap the part of the portrait that moves, then paint the inner mouth."""
    frame = out if out is not None else np.empty_like(image)
    moving = rig.backward_map(pose)
    if moving is None:
        frame[...] = image
        return frame
    y0, y1, x0, x1 = moving.box
    m1, m2 = cv2.convertMaps(moving.map, None, cv2.CV_16SC2)
    if (y1 - y0, x1 - x0) == image.shape[:2]:
        cv2.remap(image, m1, m2, cv2.INTER_LINEAR, dst=frame, borderMode=cv2.BORDER_REPLICATE)
    else:
        frame[...] = image
        frame[y0:y1, x0:x1] = cv2.remap(image, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if moving.gap is not None:
        paint_mouth(frame, moving.gap, colours)
    if moving.seam is not None:
        shade_seam(frame, moving.seam, colours)
    return frame


def mouth_frame(image: np.ndarray, landmarks: np.ndarray, opening: float) -> np.ndarray:
    """One still frame with the mouth `opening` (0 closed .. 1 as wide as loud speech opens it),
    head and eyes still: what the contact sheet and the still-image mouth tests look at."""
    image = np.ascontiguousarray(image)
    points = np.asarray(landmarks, dtype=np.float32)
    rig = FaceRig(image.shape[:2], points, image)
    colours = mouth_colours(image, points, rig.source_mouth_open)
    o = float(opening)
    pose = FacePose(jaw=_JAW * o - closing_for(rig.source_gap, o), lip_raise=_LIP_RAISE * o)
    return render_frame(image, rig, pose, colours)
