"""Dense backward maps that move one portrait's landmarks, applied with cv2.remap.

Every output pixel p samples the source image at map(p). The map is built from
a handful of smooth fields, each defined in the coordinate frame of the
feature it moves, so the motion looks anatomical rather than a rubber sheet:

- head: a small rotation/scale/shift of the head about the neck, fading to
  zero over the shoulders and background (computed on a coarse grid and
  resized - it is very smooth);
- mouth and jaw: everything below the lower lip drops with the jaw as one piece
  (nothing past the mouth corners at lip level), the skin below the chin
  stretches and the motion ends above any collar, the upper lip lifts a little
  (in one piece), and the corners spread or purse. Pixels that end up between
  the lips sample the lip line; mouth.py paints the cavity there;
- eyelids: the upper lid slides down to the lower lid (blinks);
- brows: lift with the forehead, stretching the skin above the eyes (smooth, so
  computed on the coarse grid with the head).

The local fields are computed only inside their feature's box, at the
positions the head motion has moved the landmarks to, so one remap applies
head and face motion together (one resampling, no double blur).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face import BROW_LEFT, BROW_RIGHT, EYE_LEFT, EYE_RIGHT

_COARSE = 8  # head field grid step (pixels)
_NECK_REACH = 2.4  # below the chin the jaw's motion fades out over this (mouth half-widths) ...
_NECK_MIN = 0.45  # ... or sooner, where clothing starts (see FaceRig._neck_reach), but never sooner
_NECK_X = np.linspace(-2.4, 2.4, 49, dtype=np.float32)  # where across the mouth the reach is sampled
_EDGE = 0.06  # inner lip edge ramp (mouth half-widths)


@dataclass(frozen=True)
class FacePose:
    """One frame's expression and pose (all 0 = the input image unchanged)."""

    jaw: float = 0.0  # lower lip/jaw drop, in mouth half-widths (negative closes an open mouth)
    lip_raise: float = 0.0  # upper lip lift, mouth half-widths
    width: float = 0.0  # relative change of mouth width (+ spread, - pursed)
    roundness: float = 0.0  # 0..1: rounder opening ("oo")
    blink: float = 0.0  # 0 open .. 1 closed
    brow: float = 0.0  # 0..1 raise
    head: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # dx, dy (face widths), roll (rad), scale


@dataclass
class FrameMap:
    """One frame's remap map over `box` (y0, y1, x0, x1); outside it the frame is the input image."""

    box: tuple[int, int, int, int]
    map: np.ndarray  # [y1-y0, x1-x0, 2] float32 source coordinates
    gap: MouthGap | None
    seam: Seam | None = None


@dataclass
class Seam:
    """Where closed lips press together in this frame: `weight` (0..1, [h, w]) over `box` marks the
    contact line and the top of the lower lip just below it, for the painter to shade."""

    box: tuple[int, int, int, int]
    weight: np.ndarray


@dataclass
class MouthGap:
    """Where the lips parted in this frame, for painting the inner mouth (all arrays [h, w])."""

    box: tuple[int, int, int, int]  # y0, y1, x0, x1 in the output frame
    alpha: np.ndarray  # 0..1 coverage of the opening (anti-aliased edges)
    depth: np.ndarray  # 0 at the upper lip edge .. 1 at the lower lip edge
    across: np.ndarray  # -1..1 from one mouth corner to the other
    height_px: np.ndarray  # opening height at this column, pixels
    half_width_px: float  # mouth half-width, pixels (sets teeth size)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(1e-6, float(np.hypot(v[0], v[1])))


def _clip_box(x0: float, y0: float, x1: float, y1: float, w: int, h: int) -> tuple[int, int, int, int]:
    return (
        int(np.clip(np.floor(y0), 0, h)),
        int(np.clip(np.ceil(y1), 0, h)),
        int(np.clip(np.floor(x0), 0, w)),
        int(np.clip(np.ceil(x1), 0, w)),
    )


def _frame_box(origin: np.ndarray, u: np.ndarray, v: np.ndarray, scale: float, xr, yr, w: int, h: int):
    """Image box covering the rectangle xr x yr of a local frame (origin, axes u/v, units of `scale`)."""
    corners = np.array([origin + scale * (x * u + y * v) for x in xr for y in yr])
    return _clip_box(*corners.min(axis=0), *corners.max(axis=0), w, h)


def _local_coords(box, origin: np.ndarray, u: np.ndarray, v: np.ndarray, scale: float, step: int = 1):
    """Coordinates (along u, along v; units of `scale`) of the box's pixels, or of every
    `step`-th pixel (at the centres of step x step cells, which is how cv2.resize upsamples)."""
    y0, y1, x0, x1 = box
    off = (step - 1) / 2.0
    nx, ny = -(-(x1 - x0) // step), -(-(y1 - y0) // step)
    dx = (np.arange(nx, dtype=np.float32) * step + np.float32(x0 + off - origin[0]))[None, :]
    dy = (np.arange(ny, dtype=np.float32) * step + np.float32(y0 + off - origin[1]))[:, None]
    s = np.float32(1.0 / scale)
    along_u = (dx * np.float32(u[0]) + dy * np.float32(u[1])) * s
    along_v = (dx * np.float32(v[0]) + dy * np.float32(v[1])) * s
    return along_u, along_v


def _profile(q: np.ndarray, roundness: float) -> np.ndarray:
    """max(q, 0) ** (1.5 - 0.5 * roundness), without a float power (slow): rounder = fuller corners."""
    q = np.maximum(q, 0.0)
    r = np.float32(roundness)
    return q * (np.sqrt(q) * (1.0 - r) + r)


class FaceRig:
    """The static geometry of one portrait; `backward_map(pose)` gives one frame's remap map."""

    def __init__(
        self, shape: tuple[int, int], landmarks: np.ndarray, image: np.ndarray | None = None
    ) -> None:
        """`image` (the portrait, optional) lets the jaw's motion stop above a collar or neckline
        instead of dragging it along (see _neck_reach)."""
        self.h, self.w = int(shape[0]), int(shape[1])
        self.points = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
        p = self.points
        self.face_width = float(np.hypot(*(p[16] - p[0])))
        brow_y = float(p[17:27, 1].mean())
        chin = p[8]
        face_height = max(1.0, float(chin[1] - brow_y))
        self.pivot = np.array([float(p[:, 0].mean()), float(chin[1] + 0.3 * face_height)])
        ys, xs = np.mgrid[0 : self.h, 0 : self.w].astype(np.float32)
        self.grid = np.dstack([xs, ys])  # identity map [H, W, 2]
        self.head_weight, self.coarse_xy = self._head_weight(p, brow_y, face_height)
        self.source_gap = self._source_gap(p)
        self.source_mouth_open = self.source_gap > 0.0
        self.neck_reach = np.full_like(_NECK_X, _NECK_REACH)
        if image is not None:
            self.neck_reach = self._neck_reach(np.asarray(image), p)

    @staticmethod
    def _mouth_axes(p: np.ndarray):
        """The mouth's frame: centre, unit axes (u along the mouth, v down the face), half-width a,
        the parting line as a parabola in (u, v)/a coordinates, and the chin's depth below it."""
        u = _unit(p[54] - p[48])
        if u[0] < 0:
            u = -u
        v = np.array([-u[1], u[0]])  # points down the face
        a = max(2.0, float(np.hypot(*(p[54] - p[48]))) / 2.0)
        c = (p[48] + p[54]) / 2.0

        def local(q):
            d = q - c
            return d @ u / a, d @ v / a

        # The parting line: the lower inner lip (upper teeth, if shown, go up with the upper lip).
        # A parabola through the points, not a polyline: landmark jitter would put kinks in the
        # lip edge, and the opening and the teeth follow it.
        sx, sy = local(p[[48, 60, 67, 66, 65, 64, 54]])
        curve = np.polyfit(sx, sy, 2)
        cx, cy = local(p[8])
        chin = max(0.8, float(cy - np.polyval(curve, cx)))
        tx, ty = local(p[51])
        upper = max(0.05, float(np.polyval(curve, tx) - ty))  # the upper lip (and any teeth) above it
        return c, u, v, a, curve, chin, upper

    def _neck_reach(self, image: np.ndarray, p: np.ndarray) -> np.ndarray:
        """How far below the chin (mouth half-widths, at each of _NECK_X) the jaw's motion may reach.

        Only skin should stretch: a collar, a neckline or a scarf under the chin that moved with
        the jaw would bend into a wave at every syllable. Going down from the chin, the first
        strong, lasting colour change (clothing against skin) ends the reach, a little above it;
        the reach is then smoothed across so that it cannot put a ripple of its own in the neck."""
        c, u, v, a, curve, chin, _ = self._mouth_axes(p)
        step = 0.02
        ys = np.arange(0.0, _NECK_REACH + 0.2, step, dtype=np.float32)  # below the chin
        yp = chin + ys[:, None] + np.polyval(curve, _NECK_X)[None, :]
        xy = c + a * (_NECK_X[None, :, None] * u + yp[..., None] * v)
        x0, y0 = np.floor(xy.reshape(-1, 2).min(axis=0)).astype(int) - 4
        x1, y1 = np.ceil(xy.reshape(-1, 2).max(axis=0)).astype(int) + 4
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return np.full_like(_NECK_X, _NECK_REACH)
        crop = cv2.GaussianBlur(image[y0:y1, x0:x1].astype(np.float32), (0, 0), max(1.0, 0.03 * a))
        samples = cv2.remap(
            crop,
            (xy[..., 0] - x0).astype(np.float32),
            (xy[..., 1] - y0).astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        k = 3  # colour change over 2k steps (0.12 half-widths: an edge, not shading)
        change = np.zeros(samples.shape[:2], dtype=np.float32)
        change[k:-k] = np.linalg.norm(samples[2 * k :] - samples[: -2 * k], axis=2)
        # A lasting change: the colour after the edge stays away from the skin just above it.
        after = np.zeros_like(change)
        far = 4 * k
        after[k:-far] = np.linalg.norm(samples[far + k :] - samples[: -far - k], axis=2)
        edge = (change > 40.0) & (after > 30.0) & (ys[:, None] >= 0.2)
        first = np.where(edge.any(axis=0), ys[np.argmax(edge, axis=0)] - 0.1, _NECK_REACH)
        # Outside the frame (no image below) nothing stops the reach.
        inside = (xy[..., 0] >= 0) & (xy[..., 0] < self.w) & (xy[..., 1] >= 0) & (xy[..., 1] < self.h)
        first = np.where(inside[0], first, _NECK_REACH)
        # Smooth across: a running minimum (the reach must end above the edge), then a blur.
        padded = np.pad(first, 3, mode="edge")
        low = np.min(np.lib.stride_tricks.sliding_window_view(padded, 7), axis=1)
        smooth = cv2.GaussianBlur(
            low.reshape(1, -1).astype(np.float32), (0, 0), 2.5, borderType=cv2.BORDER_REPLICATE
        )
        return np.clip(smooth.ravel(), _NECK_MIN, _NECK_REACH).astype(np.float32)

    def _head_weight(self, p: np.ndarray, brow_y: float, face_height: float):
        """1 on the head (face, hair, ears), fading over neck, shoulders and background.

        Sampled on a coarse grid with one extra cell beyond each edge, so that resizing it
        (see _head_map) interpolates everywhere inside the frame and never clamps.
        """
        hc, wc = -(-self.h // _COARSE) + 2, -(-self.w // _COARSE) + 2
        ys = (np.arange(hc, dtype=np.float32) - 1) * _COARSE + (_COARSE - 1) / 2.0
        xs = (np.arange(wc, dtype=np.float32) - 1) * _COARSE + (_COARSE - 1) / 2.0
        top = brow_y - 0.9 * face_height
        cy, ry = (p[8, 1] + top) / 2.0, (p[8, 1] - top) / 2.0 * 1.05
        cx, rx = float(p[:, 0].mean()), 0.62 * self.face_width
        r = np.sqrt(((xs[None, :] - cx) / rx) ** 2 + ((ys[:, None] - cy) / ry) ** 2)
        weight = np.exp(-((np.maximum(r - 1.0, 0.0) / 0.35) ** 2))
        # Still at the frame edges: a moving edge would sample outside the image (smeared rows).
        edge = np.minimum.outer(np.minimum(ys, self.h - 1 - ys), np.minimum(xs, self.w - 1 - xs))
        taper = np.clip(edge / (0.06 * max(self.h, self.w)), 0.0, 1.0)
        weight = (weight * taper * taper * (3 - 2 * taper)).astype(np.float32)
        xy = np.dstack(np.meshgrid(xs, ys)).astype(np.float32)
        return weight, xy

    @staticmethod
    def _source_gap(p: np.ndarray) -> float:
        """How far the portrait's lips are already apart (mouth half-widths; 0 if they touch).

        A smiling portrait showing teeth must be closed (a negative jaw) in silence."""
        half_width = np.hypot(*(p[54] - p[48])) / 2.0
        gap = float(np.hypot(*(p[62] - p[66]))) / max(half_width, 1e-6)
        return gap if gap > 0.16 else 0.0

    # --- head -----------------------------------------------------------------------------------------
    def head_matrix(self, head) -> np.ndarray:
        """Forward 2x3 similarity (source -> output) about the neck pivot."""
        dx, dy, roll, scale = (float(v) for v in head)
        c, s = np.cos(roll) * (1.0 + scale), np.sin(roll) * (1.0 + scale)
        a = np.array([[c, -s], [s, c]])
        t = self.pivot - a @ self.pivot + np.array([dx, dy]) * self.face_width
        return np.hstack([a, t[:, None]])

    def _coarse_map(self, forward: np.ndarray, moved: np.ndarray, brow: float) -> np.ndarray:
        """Full-frame map of the smooth motions (head, brows): built on the coarse grid, then
        resized; bilinear resizing reproduces the identity part exactly."""
        inv = cv2.invertAffineTransform(forward).astype(np.float32)
        xy = self.coarse_xy
        src = xy @ inv[:, :2].T + inv[:, 2]
        coarse = xy + (src - xy) * self.head_weight[..., None]
        if brow > 1e-3:
            iod = float(np.hypot(*(moved[EYE_LEFT].mean(0) - moved[EYE_RIGHT].mean(0))))
            for b in (BROW_RIGHT, BROW_LEFT):
                coarse += self._brow_field(moved[b], brow * 0.05 * iod, xy)
        hc, wc = coarse.shape[:2]
        big = cv2.resize(coarse, (wc * _COARSE, hc * _COARSE), interpolation=cv2.INTER_LINEAR)
        return big[_COARSE : _COARSE + self.h, _COARSE : _COARSE + self.w]  # a view: no copy

    # --- the map ---------------------------------------------------------------------------------------
    def backward_map(self, pose: FacePose) -> FrameMap | None:
        """The remap map over the part of the frame that moves (None: the frame is the input)."""
        forward = self.head_matrix(pose.head)
        moved = self.points @ forward[:, :2].T + forward[:, 2]
        fields: list[tuple[tuple[int, int, int, int], np.ndarray]] = []
        gap = seam = None
        if abs(pose.jaw) > 1e-4 or abs(pose.lip_raise) > 1e-4 or abs(pose.width) > 1e-4:
            box, delta, gap, seam = self._mouth_field(moved, pose)
            fields.append((box, delta))
        if pose.blink > 1e-3:
            for eye in (EYE_RIGHT, EYE_LEFT):
                fields.append(self._eyelid_field(moved[eye], pose.blink))
        fields = [(b, d) for b, d in fields if d.size]
        if any(abs(float(v)) > 1e-6 for v in pose.head) or pose.brow > 1e-3:
            y0, y1, x0, x1 = 0, self.h, 0, self.w
            mapping = self._coarse_map(forward, moved, pose.brow)
        elif fields:
            y0, x0 = min(b[0] for b, _ in fields), min(b[2] for b, _ in fields)
            y1, x1 = max(b[1] for b, _ in fields), max(b[3] for b, _ in fields)
            mapping = self.grid[y0:y1, x0:x1].copy()
        else:
            return None
        for (by0, by1, bx0, bx1), delta in fields:
            mapping[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] += delta
        return FrameMap(box=(y0, y1, x0, x1), map=mapping, gap=gap, seam=seam)

    # --- mouth and jaw ---------------------------------------------------------------------------------
    def _mouth_field(self, p: np.ndarray, pose: FacePose):
        c, u, v, a, curve, chin, upper = self._mouth_axes(p)
        box = _frame_box(c, u, v, a, (-2.4, 2.4), (-2.0, chin + _NECK_REACH), self.w, self.h)
        # The field is smooth: on big faces compute it on every 2nd/3rd pixel and resize.
        step = max(1, int(a // 28))
        xp, yp = _local_coords(box, c, u, v, a, step)
        c2, c1, c0 = (np.float32(k) for k in curve)
        ypp = yp - ((c2 * xp + c1) * xp + c0)
        f32 = np.float32

        # Corners spread/purse: backward x scale near the lip line (x^4: flat over the mouth).
        x2 = xp * xp * f32(1 / 1.8**2)
        y2 = ypp * ypp * f32(1 / 0.9**2)
        g = np.exp(-(y2 + x2 * x2))
        src_x = xp / (1.0 + f32(pose.width) * g)
        sx2 = src_x * src_x

        # Opening profile across the mouth: 0 at the corners at lip level, widening towards the chin.
        sig = 1.0 + f32(0.8 / 1.5) * np.minimum(np.maximum(ypp, 0.0), f32(1.5))
        prof = _profile(1.0 - sx2 / (sig * sig), pose.roundness)
        # The jaw moves the lower lip, chin and lower face as one piece (lips keep their
        # thickness, the chin keeps its shape) and the skin stretches only between the moved chin
        # and the end of the neck's reach (see _neck_reach), where the motion has faded to nothing:
        # a collar there stays put. A chin dropping further than that pushes the end down ahead of
        # it rather than fold over it. (Output coordinates: the fade starts where the chin went.)
        drop = f32(pose.jaw) * prof
        neck = np.flatnonzero((ypp > f32(chin - abs(pose.jaw))).any(axis=1))  # rows reaching the neck
        if neck.size:
            rows = slice(int(neck[0]), None)
            rigid = drop[rows]
            reach = np.interp(xp[rows], _NECK_X, self.neck_reach).astype(np.float32)
            t = np.clip((ypp[rows] - f32(chin) - rigid) / np.maximum(reach - rigid, f32(0.15)), 0.0, 1.0)
            drop[rows] = rigid * (1.0 - t * t * (3.0 - 2.0 * t))
        # The upper lip (with any teeth the portrait shows) lifts as one piece, so it keeps its
        # thickness; the skin above it takes the stretch.
        above = np.minimum(ypp + f32(upper), 0.0)
        lift = (
            f32(pose.lip_raise)
            * _profile(1.0 - sx2, pose.roundness)
            * np.exp(-above * above * f32(1 / 0.9**2))
        )

        # Below the parting line everything drops with the jaw; a negative drop (closing an open
        # portrait's mouth) pulls the lower lip up over what lay between the lips.
        # The lower lip's top row samples a pixel or so inside the lip, not the parting line
        # itself: there bilinear sampling would pick up the edge of any teeth above it (a bright
        # line along the seam of a closed mouth).
        lower = ypp >= np.minimum(drop, 0.0)
        # Only between the mouth corners: beyond them the skin has no parting, and the clamp would
        # repeat one row of it in a line out to the cheeks.
        inside_lip = f32(min(0.1, 1.2 / a)) * np.minimum(prof * f32(4.0), 1.0)
        src_y = np.where(lower, np.maximum(ypp - drop, inside_lip), np.minimum(ypp + lift, 0.0))
        dxp, dyp = src_x - xp, src_y - ypp
        fa = f32(a)
        delta = np.empty(xp.shape + (2,), dtype=np.float32)
        delta[..., 0] = fa * (dxp * f32(u[0]) + dyp * f32(v[0]))
        delta[..., 1] = fa * (dxp * f32(u[1]) + dyp * f32(v[1]))
        # For the painter: pixels from the nearer lip edge (> 0 between the lips), opening
        # height in pixels, depth from the upper lip (0..1), position across (-1..1).
        total = lift + drop
        layers = np.empty(xp.shape + (4,), dtype=np.float32)
        layers[..., 0] = np.minimum(ypp + lift, drop - ypp) * fa
        layers[..., 1] = total * fa
        layers[..., 2] = (ypp + lift) / np.maximum(total, f32(1e-3))
        layers[..., 3] = src_x
        h, w = box[1] - box[0], box[3] - box[2]
        if step > 1:
            size = (xp.shape[1] * step, xp.shape[0] * step)
            delta = cv2.resize(delta, size, interpolation=cv2.INTER_LINEAR)[:h, :w]
            layers = cv2.resize(layers, size, interpolation=cv2.INTER_LINEAR)[:h, :w]
        seam = None
        if pose.jaw < 0.0:
            # Lips pulled shut over a portrait's open mouth: the contact line and the top of the
            # lower lip below it (where the portrait's lip highlight was, now a thin bright line
            # against the upper lip) are shaded like pressed lips.
            below = (ypp - drop) * fa  # pixels below the contact line
            reach = f32(max(1.5, 0.14 * a))
            weight = np.exp(-((below / reach) ** 2)) * np.clip(drop / f32(pose.jaw), 0.0, 1.0)
            weight = np.where(below < 0.0, np.exp(-((below / f32(1.0)) ** 2)) * weight, weight)
            if step > 1:
                weight = cv2.resize(weight, size, interpolation=cv2.INTER_LINEAR)[:h, :w]
            rows = np.flatnonzero((weight > 4e-3).any(axis=1))
            cols = np.flatnonzero((weight > 4e-3).any(axis=0))
            if rows.size and cols.size:  # only the thin band along the seam: shading is per pixel
                r0, r1, q0, q1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
                seam = Seam(
                    box=(box[0] + r0, box[0] + r1, box[2] + q0, box[2] + q1),
                    weight=np.ascontiguousarray(weight[r0:r1, q0:q1], dtype=np.float32),
                )
        return box, delta, self._gap(box, a, layers), seam

    @staticmethod
    def _gap(box, a: float, layers: np.ndarray) -> MouthGap | None:
        inside, total = layers[..., 0], layers[..., 1]
        # Soft edges where the lips curl inwards (a ramp of a few percent of the mouth width,
        # at least a pixel: a hard edge is what gives a pasted-on mouth away); an opening
        # thinner than the ramp covers only its height.
        edge = np.float32(max(1.0, _EDGE * a))
        alpha = np.clip(np.minimum(inside / edge + 0.5, total / edge), 0.0, 1.0)
        rows = np.flatnonzero(alpha.any(axis=1))
        cols = np.flatnonzero(alpha.any(axis=0))
        if rows.size == 0 or cols.size == 0:
            return None
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        sl = (slice(r0, r1), slice(c0, c1))
        return MouthGap(
            box=(box[0] + r0, box[0] + r1, box[2] + c0, box[2] + c1),
            alpha=alpha[sl],
            depth=np.clip(layers[sl + (2,)], 0.0, 1.0),
            across=np.clip(layers[sl + (3,)], -1.0, 1.0),
            height_px=total[sl],
            half_width_px=a,
        )

    # --- eyelids ---------------------------------------------------------------------------------------
    def _eyelid_field(self, eye: np.ndarray, blink: float):
        c0, c1 = (eye[0], eye[3]) if eye[0][0] <= eye[3][0] else (eye[3], eye[0])
        ue = _unit(c1 - c0)
        ve = np.array([-ue[1], ue[0]])
        ew = max(2.0, float(np.hypot(*(c1 - c0))))

        def local(q):
            d = q - c0
            return d @ ue, d @ ve

        ux, uy = local(eye[[0, 1, 2, 3]])
        lx, ly = local(eye[[0, 5, 4, 3]])
        box = _frame_box(c0, ue, ve, ew, (-0.4, 1.4), (-1.1, 0.6), self.w, self.h)
        xe, ye = _local_coords(box, c0, ue, ve, 1.0)
        o = np.argsort(ux)
        upper = np.interp(xe, ux[o], uy[o]).astype(np.float32)
        o = np.argsort(lx)
        lower = np.interp(xe, lx[o], ly[o]).astype(np.float32)
        lower = np.maximum(lower, upper)
        new_upper = upper + np.float32(blink) * (lower - upper)
        shift = new_upper - upper
        lam = np.float32(0.5 * ew)
        above = ye - shift * np.exp(-((np.minimum(ye - new_upper, 0.0) / lam) ** 2))
        squeeze = (lower - upper) / np.maximum(lower - new_upper, 1e-3)
        middle = lower - (lower - ye) * squeeze
        src = np.where(ye < new_upper, above, np.where(ye <= lower, middle, ye))
        outside = np.maximum(np.maximum(-xe, xe - ew), 0.0)
        lateral = np.exp(-((outside / np.float32(0.12 * ew)) ** 2))
        d = (src - ye) * lateral
        delta = np.empty(xe.shape + (2,), dtype=np.float32)
        delta[..., 0] = d * np.float32(ve[0])
        delta[..., 1] = d * np.float32(ve[1])
        return box, delta

    # --- brows -----------------------------------------------------------------------------------------
    @staticmethod
    def _brow_field(brow: np.ndarray, amount_px: float, xy: np.ndarray) -> np.ndarray:
        """Backward displacement at points `xy` [..., 2] that lifts one brow and the forehead
        above it by `amount_px`, stretching the skin between brow and eye."""
        ub = _unit(brow[-1] - brow[0])
        if ub[0] < 0:
            ub = -ub
        vb = np.array([-ub[1], ub[0]], dtype=np.float32)
        bl = max(2.0, float(np.hypot(*(brow[-1] - brow[0]))))
        d = xy - brow.mean(axis=0).astype(np.float32)
        xb = (d @ ub.astype(np.float32)) / np.float32(bl)
        yb = (d @ vb) / np.float32(bl)
        across = np.exp(-((xb / 0.75) ** 2))
        updown = np.where(yb < 0, np.exp(-((yb / 1.3) ** 2)), np.exp(-((yb / 0.45) ** 2)))
        lift = np.float32(amount_px) * across * updown
        return lift[..., None] * vb  # sample from below: the brow moves up
