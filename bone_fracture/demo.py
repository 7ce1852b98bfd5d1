"""Deterministic synthetic "X-ray-like" bone-fracture dataset for offline runs and tests.

`make_demo_dataset` writes JPEGs in the layout of the Kaggle *Bone Break Classification*
export (``Bone Break Classification/<class>/{Train,Test}/<source>_jpg.rf.<hex>.jpg``).
Every image shows a dark background, a soft-tissue haze, one long bone (sometimes a
second, intact, parallel bone) and a class-specific fracture on the first bone.

A few Test images are planted near-copies of Train images (mirrored, black-padded,
contrast-changed or rotated by 90 degrees); two of them sit in a *different* class
folder than their original. A copy keeps its original's ``<source>`` name and gets a new
Roboflow hash, exactly like a re-exported image, so the ground truth is recovered from the
file names alone with `planted_duplicates`.
"""
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

DEMO_CLASSES = ['Transverse fracture', 'Oblique fracture', 'Spiral Fracture',
                'Comminuted fracture', 'Greenstick fracture']
DATASET_DIR = 'Bone Break Classification'
LEAK_TRANSFORMS = ('mirror', 'pad', 'contrast', 'rot90')
N_CROSS_LABEL_LEAKS = 2  # planted near-copies filed under another class
_NAME_RE = re.compile(r'^(?P<source>.+)_jpg\.rf\.[0-9a-f]{32}\.jpg$')


def _roboflow_name(source: str, copy: int, seed: int) -> str:
    "File name `<source>_jpg.rf.<32 hex>.jpg`; the hash is derived from seed, source and copy index."
    digest = hashlib.md5(f'{seed}/{source}/{copy}'.encode()).hexdigest()
    return f'{source}_jpg.rf.{digest}.jpg'


def _gap(dist, half_width):
    "Soft 0..1 mask of a dark crack at signed distance `dist` (pixels) from its centre line."
    return np.exp(-(dist / half_width) ** 2)


def _bone(s, t, half_len, half_w):
    "Intensity (0..1) of a long bone in shaft coordinates: flared ends, bright cortex, darker marrow."
    flare = 1 + 0.6 * np.clip((np.abs(s) - 0.6 * half_len) / (0.4 * half_len), 0, 1) ** 2
    hw = half_w * flare
    r = np.sqrt(np.maximum(np.abs(s) - half_len, 0) ** 2 + t ** 2) / hw  # 0 on the axis, 1 at the edge
    inside = np.clip((1 - r) * hw / 1.2, 0, 1)  # ~1 px soft edge
    profile = 0.5 + 0.5 * np.exp(-((r - 0.82) / 0.16) ** 2)  # cortex peaks near the edge
    return inside * profile


def _fractured_bone(cls, s, t, half_len, hw, rng):
    "Bone intensity with the fracture pattern of class index `cls` drawn around s0 on the shaft."
    s0 = rng.uniform(-0.15, 0.15) * half_len
    ds = s - s0
    gw = rng.uniform(0.2, 0.28) * hw  # crack half-width
    name = DEMO_CLASSES[cls].split()[0].lower()
    if name == 'greenstick':  # smoothly bowed shaft, wedge crack on the convex (tension) side only
        side, soft = rng.choice([-1, 1]), 0.6 * hw
        t = t - side * np.tan(np.radians(rng.uniform(24, 36))) * soft * np.logaddexp(0, ds / soft)
        depth = rng.uniform(0.3, 0.5)  # fraction of the width that is cracked
        outer = -side * t / hw  # 1 at the convex cortex, -1 at the concave one
        wedge = _gap(ds, gw * np.clip(outer, 0.2, 1)) * np.clip((outer - (1 - 2 * depth)) * 3, 0, 1)
        return _bone(s, t, half_len, hw) * (1 - 0.85 * wedge)
    if name == 'transverse':  # straight gap perpendicular to the shaft, slight shift
        line = ds
    elif name == 'oblique':  # long straight gap at 45-60 degrees to the perpendicular
        line = ds - rng.choice([-1, 1]) * np.tan(np.radians(rng.uniform(45, 60))) * t
    if name in ('transverse', 'oblique'):
        shift = rng.uniform(0.35, 0.6) * hw * rng.choice([-1, 1])
        t = t - shift * (1 / (1 + np.exp(-line / 1.5)))  # distal fragment displaced sideways
        return _bone(s, t, half_len, hw) * (1 - 0.9 * _gap(line, gw))
    if name == 'spiral':  # helix seen from the side: strong front S-curve, fainter back turns
        x = ds / (rng.uniform(1.0, 1.4) * hw)  # one helix turn spans -2 < x < 2
        curve = rng.choice([-1, 1]) * 1.05 * hw * np.sin(0.5 * np.pi * np.clip(x, -2, 2))
        strength = np.where(np.abs(x) < 1, 1.0, 0.9) * np.clip((2 - np.abs(x)) * 4, 0, 1)
        crack = _gap(t - curve, gw) * strength
        return _bone(s, t, half_len, hw) * (1 - 0.9 * crack)
    # comminuted: several crossing gaps plus loose bright fragments beside the shaft
    crack = np.zeros_like(s)
    for _ in range(rng.integers(4, 7)):
        a = np.radians(rng.uniform(-65, 65))  # line normal within 65 deg of the axis: no lengthwise gaps
        line = (ds - rng.uniform(-1.2, 1.2) * hw) * np.cos(a) + t * np.sin(a)
        crack = np.maximum(crack, _gap(line, gw))
    crack *= np.clip((2.2 * hw - np.abs(ds)) / (0.3 * hw), 0, 1)
    img = _bone(s, t, half_len, hw) * (1 - 0.9 * crack)
    for _ in range(rng.integers(2, 4)):
        fs, ft = ds - rng.uniform(-1.5, 1.5) * hw, t - rng.choice([-1, 1]) * rng.uniform(1.1, 1.5) * hw
        img = img + 0.8 * np.clip(1 - np.hypot(fs / (0.5 * hw), ft / (0.25 * hw)), 0, 1) ** 0.5
    return img


def render_xray(cls: int, rng: np.random.Generator, size: int = 96) -> np.ndarray:
    "Render one uint8 grayscale image of class index `cls`, about `size` px (-20..+25 %), rarely square."
    scale, aspect = rng.uniform(0.8, 1.25), rng.uniform(0.85, 1.18)
    h, w = int(round(size * scale * aspect ** 0.5)), int(round(size * scale / aspect ** 0.5))
    m = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # background: dark, with a linear gradient
    g = rng.uniform(-0.06, 0.06, 2)
    img = rng.uniform(0.03, 0.12) + g[0] * (xx / w - 0.5) + g[1] * (yy / h - 0.5)
    # main bone, roughly vertical, fracture near the image centre
    cx, cy = w / 2 + rng.uniform(-0.12, 0.12) * m, h / 2 + rng.uniform(-0.12, 0.12) * m
    theta = np.pi / 2 + np.radians(rng.uniform(-15, 15))
    u, v = np.array([np.cos(theta), np.sin(theta)]), np.array([-np.sin(theta), np.cos(theta)])
    s, t = (xx - cx) * u[0] + (yy - cy) * u[1], (xx - cx) * v[0] + (yy - cy) * v[1]
    half_len, hw = rng.uniform(0.45, 0.7) * max(h, w), rng.uniform(0.16, 0.2) * m
    # soft tissue haze around the bone(s)
    tissue_w = rng.uniform(3.0, 4.5) * hw
    img = img + rng.uniform(0.08, 0.18) * np.clip((tissue_w - np.abs(t)) / (0.5 * tissue_w), 0, 1)
    bones = _fractured_bone(cls, s, t, half_len, hw, rng)
    if rng.random() < 0.35:  # second, thinner, intact bone alongside (radius/ulna, tibia/fibula)
        off, tilt = rng.choice([-1, 1]) * rng.uniform(2.1, 2.8) * hw, rng.uniform(-0.06, 0.06)
        bones = bones + _bone(s, t - off - tilt * s, half_len, rng.uniform(0.55, 0.8) * hw)
    img = img + rng.uniform(0.55, 0.8) * bones
    # acquisition: blur, noise, contrast/brightness/gamma
    img = np.asarray(Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
                     .filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0))), np.float32) / 255
    img = img + rng.normal(0, rng.uniform(0.01, 0.03), img.shape)
    img = np.clip(img * rng.uniform(0.85, 1.15) + rng.uniform(-0.04, 0.04), 0, 1) ** rng.uniform(0.8, 1.25)
    return (img * 255).round().astype(np.uint8)


def near_copy(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    "A near-duplicate of `img`: 'mirror', 'pad' (black border), 'contrast' or 'rot90'."
    if kind == 'mirror':
        return img[:, ::-1]
    if kind == 'pad':
        p = max(2, int(rng.uniform(0.03, 0.06) * min(img.shape)))
        return np.pad(img, p)
    if kind == 'contrast':
        x = (img / 255.0) ** rng.uniform(0.7, 0.85) * rng.uniform(0.85, 0.95)
        return (x * 255).round().astype(np.uint8)
    if kind == 'rot90':
        return np.rot90(img, rng.choice([1, 3]))
    raise ValueError(f'unknown near-copy kind {kind!r}')


def _leak_plan(n_classes, n_train, rng):
    """Planted near-copies as (src_class, train_index, dst_class, test_slot, transform):
    one same-label copy per class in test slot 0, then `N_CROSS_LABEL_LEAKS` copies filed under
    another class in test slot 1 of distinct destination classes."""
    kinds = [LEAK_TRANSFORMS[i % len(LEAK_TRANSFORMS)] for i in rng.permutation(n_classes + N_CROSS_LABEL_LEAKS)]
    idx = [rng.choice(n_train, 2, replace=n_train < 2) for _ in range(n_classes)]
    plan = [(c, int(idx[c][0]), c, 0, kinds[c]) for c in range(n_classes)]
    for k, dst in enumerate(rng.choice(n_classes, N_CROSS_LABEL_LEAKS, replace=False)):
        src = (dst + 1 + rng.integers(n_classes - 1)) % n_classes
        plan.append((int(src), int(idx[src][1]), int(dst), 1, kinds[n_classes + k]))
    return plan


def make_demo_dataset(dest, n_train: int = 40, n_test: int = 10, size: int = 96, seed: int = 0,
                      leaks: bool = True) -> Path:
    """Write the synthetic dataset under `dest` and return `dest/'Bone Break Classification'`.

    Each of the `DEMO_CLASSES` gets `n_train` Train and `n_test` Test JPEGs (quality 90) of about
    `size` px. With `leaks`, 1 Test image per class and 2 more Test images (filed under a wrong
    class) are near-copies of Train images; see `planted_duplicates`. Same arguments give
    byte-identical files."""
    if leaks and (n_train < 1 or n_test < 2):
        raise ValueError('planting leaks needs n_train >= 1 and n_test >= 2')
    root = Path(dest) / DATASET_DIR
    rng = np.random.default_rng(seed)
    n_classes, n_per_class = len(DEMO_CLASSES), n_train + n_test
    source_ids = rng.permutation(n_classes * n_per_class) + 1  # class-agnostic source names
    plan = _leak_plan(n_classes, n_train, rng) if leaks else []
    copies = {(dst, slot): (src, i, kind) for src, i, dst, slot, kind in plan}
    train_imgs = {}

    def save(img, c, split, source, copy):
        folder = root / DEMO_CLASSES[c] / split
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / _roboflow_name(source, copy, seed), quality=90)

    for c in range(n_classes):
        for i in range(n_train):
            source = f'image{source_ids[c * n_per_class + i]:04d}'
            img = render_xray(c, np.random.default_rng([seed, c, 0, i]), size)
            train_imgs[c, i] = img, source
            save(img, c, 'Train', source, 0)
    for c in range(n_classes):
        for j in range(n_test):
            img_rng = np.random.default_rng([seed, c, 1, j])
            if (c, j) in copies:
                src, i, kind = copies[c, j]
                img, source = train_imgs[src, i]
                save(near_copy(img, kind, img_rng), c, 'Test', source, 1)
            else:
                source = f'image{source_ids[c * n_per_class + n_train + j]:04d}'
                save(render_xray(c, img_rng, size), c, 'Test', source, 0)
    return root


@dataclass(frozen=True)
class PlantedDuplicate:
    "A Train image and its planted near-copy in Test."
    source: str
    train: Path
    test: Path

    @property
    def train_class(self) -> str: return self.train.parent.parent.name

    @property
    def test_class(self) -> str: return self.test.parent.parent.name

    @property
    def same_label(self) -> bool: return self.train_class == self.test_class


def planted_duplicates(root) -> list:
    """Ground truth of the planted leakage in a dataset folder written by `make_demo_dataset`:
    every Train/Test pair of files sharing a Roboflow `<source>` name, sorted by source."""
    by_source = {}
    for f in sorted(Path(root).glob('*/*/*.jpg')):
        m = _NAME_RE.match(f.name)
        if m: by_source.setdefault(m['source'], []).append(f)
    return [PlantedDuplicate(src, a, b)
            for src, files in sorted(by_source.items())
            for a in files if a.parent.name == 'Train'
            for b in files if b.parent.name == 'Test']
