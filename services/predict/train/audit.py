"""Near-duplicates in a labelled photo folder: filed under both labels, or on both sides of the split.

A data set whose author augmented the photos (rotations, lighting) holds copies of one photo, and a
line photographs one part many times. A near-duplicate under the other label is a contradiction no model
can be right on both sides of, so it sets the zero-escape band; one on the other side of the
train/validation split makes validation figures optimistic.

Every photo gets a turn-invariant signature (its mean brightness on each 1 px ring round the frame centre);
each photo's nearest signatures are candidates. A candidate pair is aligned (turned in 1-degree steps on a
100 px view, mirrored or not, every turn at once along its rings; then in 0.5-degree steps at full size)
and then compared on fine detail only: the correlation of the two photos less their Gaussian blur (sigma
2 px), on the flat parts of the frame (no edges: the part's outline and rims would match for any two
castings in one pose), at the best shift of up to 4 px. Whole photos of this part correlate at 0.97-0.99
even when they show two castings, because the shape and the lighting dominate.

What the detail share does not tell apart (docs/model.md, session 18): a copy of one photo from another
photo of a part with the same fine surface texture. The turned surfaces of this part carry concentric
machining marks that look the same after any turn, and on the casting data random members of one cluster
of 207 ok photos share 0.81-0.87 of their detail, which is more photos than the author made copies of
one original. So a pair at or above SAME is a near-duplicate, one photo or one part in one setup, not
proven to be one photo. Near-duplicates joined through verified pairs form groups (`copy_groups`), for a
split that keeps them on one side: stricter than a split by photo, as a line's new parts are.
Numpy and Pillow only.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from partcheck.errors import InvalidInput
from services.predict.train.config import AUDIT_SAME
from services.predict.train.data import Item, is_validation

# Measured on the casting data (docs/model.md, sessions 17-18): two sample photos share 0.11 of their detail
# at the median; a sample turned, mirrored and re-encoded 0.9-0.98; copies and near-duplicates 0.6-0.9.
# Between 0.4 and 0.6 this measure cannot call a pair either way, so the default asks for 0.6.
SAME = AUDIT_SAME
NEIGHBOURS = 10
# A validation (or held-out) photo's copy is looked for among this many nearest training signatures.
TRAIN_CANDIDATES = 3
# Every photo is compared as its centre square at this side (the casting data's own size).
SIDE = 300
_VIEW = 100
_DETAIL_SIGMA = 2.0
_SHIFT = 4
# The flattest 60 % of the frame (by the gradient of a blurred copy), and the central disc.
_FLAT_SHARE = 60.0
# The coarse turn is found on rings of the small view: radii 2-40 px (inside its middle 80 %), 1-degree steps.
_RADII = np.arange(2, 41, dtype=np.float64)
_PHI = np.deg2rad(np.arange(360))


def signature(img: Image.Image) -> np.ndarray:
    """Mean brightness per 1 px ring round the frame centre: the same when the photo is turned or mirrored."""
    a = np.asarray(img.convert("L"), np.float64)
    h, w = a.shape
    yy, xx = np.mgrid[:h, :w]
    rings = min(h, w) // 2
    ring = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2).astype(np.int64).ravel()
    inside = ring < rings
    counts = np.bincount(ring[inside], minlength=rings)
    return np.bincount(ring[inside], a.ravel()[inside], minlength=rings) / counts


class _Middle:
    """A frame's middle 80 % (the corners a turn brings in are left out), centred and scaled once, to
    correlate many turned frames against."""

    def __init__(self, a: np.ndarray) -> None:
        h, w = a.shape
        self.rows, self.cols = slice(h // 10, h - h // 10), slice(w // 10, w - w // 10)
        x = a[self.rows, self.cols].ravel()
        std = x.std()
        self.x = (x - x.mean()) / std if std > 0 else None

    def corr(self, b: np.ndarray) -> float:
        """Pearson correlation with the same region of `b`; 0 if either is flat (a copy of nothing)."""
        y = b[self.rows, self.cols].ravel()
        std = y.std()
        if self.x is None or std == 0:
            return 0.0
        return float(np.dot(self.x, y - y.mean()) / (len(y) * std))


def shifted_detail(x: np.ndarray, mask: np.ndarray, b: np.ndarray, shift: int) -> float:
    """The best Pearson correlation over `mask` of `x` with `b` shifted by up to `shift` px each way.

    `b` is shifted circularly (as np.roll would); every shift comes from three FFT cross-correlations
    instead of one masked correlation per shift.
    """
    n = int(mask.sum())
    xs = x[mask]
    if n < 100 or xs.std() == 0:
        return 0.0  # no flat detail to compare: a blank frame is a copy of nothing
    m = mask.astype(np.float64)
    u = np.where(mask, (x - xs.mean()) / xs.std(), 0.0)

    def xcorr(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        # sum over pixels of p(pixel) * q(pixel + lag), for every circular lag
        return np.fft.irfft2(np.conj(np.fft.rfft2(p)) * np.fft.rfft2(q), s=p.shape)

    s_xy, s_y, s_yy = xcorr(u, b), xcorr(m, b), xcorr(m, b * b)
    lags = np.arange(-shift, shift + 1)
    rows, cols = np.ix_(lags % b.shape[0], lags % b.shape[1])
    var = s_yy[rows, cols] / n - (s_y[rows, cols] / n) ** 2
    # Rounding can leave a flat window a hair above zero: such a shift matches nothing.
    ok = var > 1e-9
    corr = np.where(ok, s_xy[rows, cols] / (n * np.sqrt(np.where(ok, var, 1.0))), -1.0)
    return float(corr.max())


def _turned(b: Image.Image, angle: float) -> Image.Image:
    return b.rotate(angle, resample=Image.Resampling.BILINEAR)


def _detail(img: Image.Image) -> np.ndarray:
    a = np.asarray(img, np.float64)
    return a - np.asarray(img.filter(ImageFilter.GaussianBlur(_DETAIL_SIGMA)), np.float64)


def _flat(img: Image.Image) -> np.ndarray:
    """Where `img` has no edge and lies within 95 % of the half side from the centre."""
    gy, gx = np.gradient(np.asarray(img.filter(ImageFilter.GaussianBlur(3)), np.float64))
    grad = np.hypot(gy, gx)
    h, w = grad.shape
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) / (min(h, w) / 2)
    # The shifts wrap round the frame: its outer few pixels stay out of the mask.
    flat: np.ndarray = (grad < np.percentile(grad, _FLAT_SHARE)) & (r > 0.15) & (r < 0.95)
    return flat


def _polar_spectrum(view: Image.Image) -> np.ndarray:
    """The view sampled on rings round its centre (1-degree steps), centred, area-weighted and scaled to
    unit norm, as its Fourier transform along the angle: a turn of the view is a shift along that axis."""
    a = np.asarray(view, np.float64)
    c = (a.shape[0] - 1) / 2
    x = c + _RADII[:, None] * np.cos(_PHI)[None]
    y = c - _RADII[:, None] * np.sin(_PHI)[None]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    v = (
        a[y0, x0] * (1 - fx) * (1 - fy)
        + a[y0, x0 + 1] * fx * (1 - fy)
        + a[y0 + 1, x0] * (1 - fx) * fy
        + a[y0 + 1, x0 + 1] * fx * fy
    )
    # Weighted by radius, as a correlation over the disc's area would be: the few centre pixels must
    # not count as much as a whole outer ring.
    w = _RADII[:, None]
    v = (v - (v * w).sum() / (w.sum() * v.shape[1])) * np.sqrt(w)
    norm = np.linalg.norm(v)
    return np.fft.rfft(v / norm if norm > 0 else v, axis=1)


class _Prepared:
    """What comparing against one photo needs of it, computed once however many photos it meets."""

    def __init__(self, img: Image.Image) -> None:
        self.img = img
        self.spectrum = _polar_spectrum(img.resize((_VIEW, _VIEW)))
        self.middle = _Middle(np.asarray(img, np.float64))
        self.detail = _detail(img)
        self.flat = _flat(img)


def _coarse_turn(a: _Prepared, b: Image.Image) -> tuple[float, bool]:
    """(angle, mirrored): the 1-degree turn of `b`, mirrored or not, that best matches `a` on the small view.

    One FFT along the rings gives the correlation at every turn at once (a loop of PIL turns took 60 ms).
    """
    best = (-np.inf, 0.0, False)
    for mirrored in (False, True):
        spectrum = _polar_spectrum((ImageOps.mirror(b) if mirrored else b).resize((_VIEW, _VIEW)))
        corr = np.fft.irfft((np.conj(a.spectrum) * spectrum).sum(0), n=len(_PHI))
        lag = int(corr.argmax())
        if corr[lag] > best[0]:
            # b is a turned by `lag` degrees: turning it back is the opposite angle.
            best = (float(corr[lag]), float(-lag % 360), mirrored)
    return best[1], best[2]


def _aligned_detail(a: _Prepared, b: Image.Image) -> float:
    """`same_photo` with `a` prepared."""
    if a.img.size != b.size:
        b = b.resize(a.img.size)
    coarse, mirrored = _coarse_turn(a, b)
    full_b = ImageOps.mirror(b) if mirrored else b
    angles = [float(t) for t in np.arange(coarse - 2, coarse + 2.01, 0.5)]
    fine = max(angles, key=lambda t: a.middle.corr(np.asarray(_turned(full_b, t), np.float64)))
    return shifted_detail(a.detail, a.flat, _detail(_turned(full_b, fine)), _SHIFT)


def same_photo(a: Image.Image, b: Image.Image) -> float:
    """How much fine detail `a` and `b` share once `b` is turned, mirrored and shifted onto `a` (grayscale).

    About 0.1 for photos of two castings, 0.6 and above for near-duplicates (see SAME).
    """
    return _aligned_detail(_Prepared(a), b)


def _load(item: Item) -> Image.Image:
    """The photo's centre square at SIDE px: copies saved at other sizes compare alike."""
    try:
        with Image.open(item.path) as img:
            gray = img.convert("L")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"{item.path} cannot be read as an image: {exc}") from exc
    if gray.size == (SIDE, SIDE):
        return gray
    return ImageOps.fit(gray, (SIDE, SIDE), Image.Resampling.BILINEAR)


def _photos(items: list[Item]) -> tuple[list[Image.Image], np.ndarray]:
    """The photos as compared, and their signatures, (n, SIDE // 2)."""
    images = [_load(it) for it in items]
    return images, np.stack([signature(img) for img in images])


def _best(scored: list[tuple[int, float]], same: float) -> tuple[int, float] | None:
    """The highest-scoring (index, score) at or above `same`, if any."""
    hits = [t for t in scored if t[1] >= same]
    return max(hits, key=lambda t: t[1]) if hits else None


def nearest(signatures: np.ndarray, k: int, reference: np.ndarray | None = None) -> np.ndarray:
    """Each row's k nearest rows of `reference` by Euclidean distance, (n, k), nearest first.

    Without a reference, the other rows of `signatures` (a row is not its own neighbour). Computed in
    blocks of rows to bound memory.
    """
    sig = signatures.astype(np.float64)
    ref = sig if reference is None else reference.astype(np.float64)
    ref_sq = (ref**2).sum(1)
    k = min(k, len(ref) - 1 if reference is None else len(ref))
    out = np.empty((len(sig), max(k, 0)), np.int64)
    for start in range(0, len(sig), 512):
        rows = sig[start : start + 512]
        block = (rows**2).sum(1)[:, None] + ref_sq[None] - 2 * rows @ ref.T
        if reference is None:
            own = np.arange(start, start + len(rows))
            block[own - start, own] = np.inf
        part = np.argpartition(block, k, axis=1)[:, :k] if k < block.shape[1] else np.argsort(block, 1)[:, :k]
        order = np.take_along_axis(block, part, 1).argsort(1)
        out[start : start + len(rows)] = np.take_along_axis(part, order, 1)
    return out


@dataclass(frozen=True)
class Copy:
    """Two files that show one photo, and how well they align."""

    a: str
    b: str
    corr: float


@dataclass
class Audit:
    """What `audit` found; file names are relative to the data folder."""

    photos: int
    same: float
    conflicts: list[Copy] = field(default_factory=list)
    across_split: list[Copy] = field(default_factory=list)
    validation: int = 0
    # Every verified pair's score: where they fall shows how clearly SAME separates on this folder.
    scores: list[float] = field(default_factory=list)

    @property
    def pairs_verified(self) -> int:
        """How many candidate pairs were aligned and scored."""
        return len(self.scores)

    @property
    def conflict_photos(self) -> list[str]:
        """Every file that is one side of an opposite-label copy."""
        return sorted({name for c in self.conflicts for name in (c.a, c.b)})

    def summary(self) -> dict[str, object]:
        """A JSON-ready summary."""
        tenths = np.clip(np.floor(np.array(self.scores) * 10), -2, 9)
        return {
            "photos": self.photos,
            "same_photo_at": self.same,
            "pairs_verified": self.pairs_verified,
            "conflicts": [asdict(c) for c in self.conflicts],
            "conflict_photos": self.conflict_photos,
            "validation": self.validation,
            "validation_with_copy_in_training": len(self.across_split),
            "across_split": [asdict(c) for c in self.across_split],
            # Tenths from below -0.1 to 1: the last bin holds 1.0 itself.
            "score_histogram": {f"{k / 10:.1f}": int((tenths == k).sum()) for k in range(-2, 10)},
        }


@dataclass
class AgainstAudit:
    """What `audit_against` found: a folder's photos with a copy in a reference folder (its training data)."""

    photos: int
    reference: int
    same: float
    copies: list[Copy] = field(default_factory=list)
    other_label: list[Copy] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "photos": self.photos,
            "reference_photos": self.reference,
            "same_photo_at": self.same,
            "with_copy_in_reference": len(self.copies),
            "with_copy_under_other_label": len(self.other_label),
            "copies": [asdict(c) for c in self.copies],
            "other_label": [asdict(c) for c in self.other_label],
        }


def audit_against(
    items: list[Item],
    reference: list[Item],
    root_of: Callable[[Item], str],
    reference_root_of: Callable[[Item], str],
    same: float = SAME,
    candidates: int = TRAIN_CANDIDATES,
    progress: Callable[[int, int], None] | None = None,
) -> AgainstAudit:
    """Each photo's best copy in `reference`, and its best copy filed there under the other label.

    Only each photo's `candidates` nearest reference signatures are verified. For a held-out set against
    the training data: a held-out photo with a copy in training measures recall of a seen photo, not of a
    new casting.
    """
    images, signatures = _photos(items)
    ref_images, ref_signatures = _photos(reference)
    near = nearest(signatures, candidates, ref_signatures)
    result = AgainstAudit(photos=len(items), reference=len(reference), same=same)
    for i, item in enumerate(items):
        if progress is not None:
            progress(i, len(items))
        # Prepared once for its candidates, as `_score_rows` does, not once per candidate.
        prepared = _Prepared(images[i])
        scored = [(int(j), _aligned_detail(prepared, ref_images[j])) for j in near[i]]
        other_label = [(j, c) for j, c in scored if reference[j].label != item.label]
        best = ((_best(scored, same), result.copies), (_best(other_label, same), result.other_label))
        for found, into in best:
            if found is not None:
                into.append(Copy(root_of(item), reference_root_of(reference[found[0]]), found[1]))
    return result


def audit(
    items: list[Item],
    root_of: Callable[[Item], str],
    val_fraction: float,
    same: float = SAME,
    neighbours: int = NEIGHBOURS,
    progress: Callable[[int, int], None] | None = None,
) -> Audit:
    """Opposite-label copies in `items`, and validation photos with a copy in training.

    Only each photo's `neighbours` nearest signatures are verified for the first, and a validation photo's
    three nearest training signatures for the second. `root_of` names an item in the report.
    """
    images, signatures = _photos(items)
    near = nearest(signatures, neighbours)
    labels = np.array([it.label for it in items])
    is_val = np.array([is_validation(it.path, val_fraction) for it in items])
    checked: dict[tuple[int, int], float] = {}

    # The loop below meets photo i in each of its pairs in turn, so the last few preparations are reused
    # (each holds a few MB of arrays: a cache of every photo would hold gigabytes).
    @lru_cache(maxsize=8)
    def prepared(i: int) -> _Prepared:
        return _Prepared(images[i])

    def verified(i: int, j: int) -> float:
        key = (min(i, j), max(i, j))
        if key not in checked:
            checked[key] = _aligned_detail(prepared(key[0]), images[key[1]])
        return checked[key]

    result = Audit(photos=len(items), same=same, validation=int(is_val.sum()))
    reported: set[tuple[int, int]] = set()
    for i in range(len(items)):
        if progress is not None:
            progress(i, len(items))
        for j in map(int, near[i]):
            # The defect-labelled file first, so a report reads "this defect is this ok photo".
            d, o = (i, j) if labels[i] == 1 else (j, i)
            if labels[i] != labels[j] and (d, o) not in reported and (c := verified(i, j)) >= same:
                reported.add((d, o))
                result.conflicts.append(Copy(root_of(items[d]), root_of(items[o]), c))
        if is_val[i]:
            in_train = [int(j) for j in near[i] if not is_val[j]][:TRAIN_CANDIDATES]
            best = _best([(j, verified(i, j)) for j in in_train], same)
            if best is not None:
                result.across_split.append(Copy(root_of(items[i]), root_of(items[best[0]]), best[1]))
    result.scores = sorted(checked.values())
    return result


@dataclass
class Groups:
    """Near-duplicate groups: files joined through every verified pair at or above `same`."""

    photos: int
    same: float
    neighbours: int
    groups: list[list[str]] = field(default_factory=list)
    # Every verified pair, (a, b, detail share): groups at another threshold need no new alignment.
    pairs: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def scores(self) -> list[float]:
        """The verified pairs' detail shares, sorted."""
        return sorted(s for _, _, s in self.pairs)

    def summary(self) -> dict[str, object]:
        """A JSON-ready summary: what `partcheck train --groups` reads."""
        sizes = [len(g) for g in self.groups]
        return {
            "photos": self.photos,
            "same_photo_at": self.same,
            "neighbours": self.neighbours,
            "pairs_verified": len(self.pairs),
            "pairs_same": sum(score >= self.same for _, _, score in self.pairs),
            "photos_in_groups": sum(sizes),
            "largest_group": max(sizes, default=0),
            "groups": self.groups,
        }


# The photos of a `copy_groups` run, set before its worker processes fork so they share them unpickled.
_SHARED: list[Image.Image] = []


def _score_rows(rows: list[tuple[int, list[int]]]) -> list[tuple[int, int, float]]:
    """(i, j, score) for each i against its listed j, preparing each i once."""
    out: list[tuple[int, int, float]] = []
    for i, js in rows:
        prepared = _Prepared(_SHARED[i])
        out.extend((i, j, _aligned_detail(prepared, _SHARED[j])) for j in js)
    return out


def copy_groups(
    items: list[Item],
    root_of: Callable[[Item], str],
    same: float = SAME,
    neighbours: int = NEIGHBOURS,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Groups:
    """Every photo's `neighbours` nearest signatures verified, and the near-duplicates joined into groups.

    A split that keeps each group on one side measures photos with no near-duplicate in training, in any
    turn, as a line's new parts are; the file-name split puts 97 % of the casting data's validation photos
    beside one (docs/model.md, sessions 17-18). Groups chain: on the casting data the largest holds 401
    photos. Pairs are scored in `workers` processes.
    """
    global _SHARED
    images, signatures = _photos(items)
    near = nearest(signatures, neighbours)
    partners: dict[int, set[int]] = {}
    for i in range(len(items)):
        for j in map(int, near[i]):
            partners.setdefault(min(i, j), set()).add(max(i, j))
    rows = [(i, sorted(js)) for i, js in sorted(partners.items())]
    chunks = [rows[k : k + 50] for k in range(0, len(rows), 50)]
    _SHARED = images
    scored: list[tuple[int, int, float]] = []
    pool = (
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) if workers > 1 else None
    )
    try:
        parts = pool.map(_score_rows, chunks) if pool is not None else map(_score_rows, chunks)
        for done, part in enumerate(parts):
            scored.extend(part)
            if progress is not None:
                progress(min((done + 1) * 50, len(rows)), len(rows))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        _SHARED = []
    parent = list(range(len(items)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, j, score in scored:
        if score >= same:
            parent[root(i)] = root(j)
    members: dict[int, list[str]] = {}
    for k, item in enumerate(items):
        members.setdefault(root(k), []).append(root_of(item))
    groups = sorted(sorted(g) for g in members.values() if len(g) > 1)
    pairs = [(root_of(items[i]), root_of(items[j]), score) for i, j, score in scored]
    return Groups(len(items), same, neighbours, groups, pairs)
