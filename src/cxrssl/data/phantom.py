"""Synthetic frontal chest radiographs: the built-in data that needs no download.

Each phantom is rendered from three independent random draws:

- ``Anatomy`` (one per patient, shared by follow-ups): thorax outline and soft
  tissue, two lung fields cut by the diaphragm domes, heart and mediastinum, spine,
  clavicles and posterior ribs, all varying in size and position;
- ``Acquisition`` (one per film): exposure and gamma, field of view, a small rotation
  and shift, blur, quantum noise, and a burned-in side marker;
- ``Lesion`` list (films of ``PNEUMONIA`` patients only): patchy consolidations and
  ground-glass opacities of varying size, density, place and side, confined to the
  lung fields.

That is the binary mode (``PNEUMONIA`` vs ``NORMAL``). The findings mode
(``write_phantom_dataset(..., findings=True)`` and ``write_phantom_chexpert``) draws
several findings per patient instead, each with its own prevalence and with
co-occurrence (heart failure: effusion and edema more likely with cardiomegaly), so
a multi-label task has a known answer:

- ``Consolidation``: the same ``Lesion`` machinery;
- ``Cardiomegaly``: the heart scaled to a cardiothoracic ratio (the heart's
  horizontal extent over the lung fields', i.e. the inner thoracic diameter) drawn
  from ``ENLARGED_CTR``; every other findings-mode heart is scaled into ``NORMAL_CTR``;
- ``Effusion``: pleural fluid in one or both lung bases (an ``Effusion`` per side),
  replacing the lung's air below a meniscus that rises towards the chest wall, so the
  costophrenic angle is blunted and the dome's outline lost;
- ``Edema``: bilateral perihilar ("bat-wing") haze (an ``Edema``).

Findings are patient-level (follow-up films keep them); their appearance (lesions,
the fluid level, the haze) varies a little from film to film. Defaults:
``DEFAULT_PREVALENCE`` and ``DEFAULT_CO_OCCURRENCE`` (see ``FindingsModel``). The
binary mode's files are byte-for-byte what they were before the findings mode existed.

The geometry is evaluated on a coordinate grid that the acquisition has already
rotated, shifted and scaled, so the lung mask and the opacity map returned with an
image are exact, not resampled. Coordinates: x from -1 (image left = patient's
right) to 1, y from -1 (top) to 1; the heart sits on the image's right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

from cxrssl.data.adapters.chexpert import OBSERVATIONS
from cxrssl.data.manifest import Manifest, ManifestRow, write_manifest
from cxrssl.errors import CxrsslError
from cxrssl.fileio import atomic_save_image, atomic_write_text, csv_text
from cxrssl.workers import parallel_map

POSITIVE, NEGATIVE = "PNEUMONIA", "NORMAL"


# --- the three random draws -------------------------------------------------------


@dataclass(frozen=True)
class Anatomy:
    thorax_half_width: float
    thorax_center_x: float
    lung_center_x: tuple[float, float]  # image-left lung, image-right lung
    lung_half_width: tuple[float, float]
    lung_apex_y: tuple[float, float]
    dome_base_y: tuple[float, float]  # lowest point of each lung, at the costophrenic angle
    dome_height: tuple[float, float]
    heart_center: tuple[float, float]
    heart_axes: tuple[float, float]
    heart_angle: float
    mediastinum_half_width: float
    rib_start_y: float
    rib_spacing: float
    clavicle_y: float
    soft_tissue: float  # attenuation of soft tissue
    lung_air: float  # how much darker than soft tissue an aerated lung is
    bone: float  # attenuation added by bone


@dataclass(frozen=True)
class Acquisition:
    rotation_deg: float
    shift: tuple[float, float]
    zoom: float  # > 1 means a tighter field of view
    exposure: float
    offset: float
    gamma: float
    blur_sigma_px: float
    noise_std: float
    marker: str  # "L" or "R"
    marker_corner: str  # "left" or "right"


@dataclass(frozen=True)
class Lesion:
    center: tuple[float, float]
    radius: float
    density: float
    kind: str  # "consolidation" or "ground_glass"
    texture_seed: int


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    lung_x = rng.uniform(0.36, 0.44)
    dome_right_side = rng.uniform(0.42, 0.52)  # image-left lung (patient's right) sits higher
    return Anatomy(
        thorax_half_width=rng.uniform(0.8, 0.93),
        thorax_center_x=rng.normal(0, 0.015),
        lung_center_x=(-lung_x + rng.normal(0, 0.015), lung_x + rng.normal(0, 0.015)),
        lung_half_width=(rng.uniform(0.25, 0.3), rng.uniform(0.23, 0.29)),
        lung_apex_y=(rng.uniform(-0.8, -0.7), rng.uniform(-0.8, -0.7)),
        dome_base_y=(dome_right_side, dome_right_side + rng.uniform(0.02, 0.08)),
        dome_height=(rng.uniform(0.1, 0.2), rng.uniform(0.08, 0.18)),
        heart_center=(rng.uniform(0.08, 0.16), rng.uniform(0.16, 0.26)),
        heart_axes=(rng.uniform(0.3, 0.38), rng.uniform(0.22, 0.28)),
        heart_angle=rng.uniform(-0.5, -0.2),
        mediastinum_half_width=rng.uniform(0.09, 0.13),
        rib_start_y=rng.uniform(-0.82, -0.74),
        rib_spacing=rng.uniform(0.12, 0.14),
        clavicle_y=rng.uniform(-0.72, -0.62),
        soft_tissue=rng.uniform(0.5, 0.62),
        lung_air=rng.uniform(0.3, 0.4),
        bone=rng.uniform(0.12, 0.2),
    )


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    return Acquisition(
        rotation_deg=rng.normal(0, 2.5),
        shift=(rng.normal(0, 0.03), rng.normal(0, 0.03)),
        zoom=rng.uniform(0.9, 1.1),
        exposure=rng.uniform(0.85, 1.15),
        offset=rng.uniform(-0.05, 0.05),
        gamma=rng.uniform(0.8, 1.25),
        blur_sigma_px=rng.uniform(0.3, 1.2),
        noise_std=rng.uniform(0.005, 0.025),
        marker=str(rng.choice(["L", "R"])),
        marker_corner=str(rng.choice(["left", "right"])),
    )


def sample_lesions(rng: np.random.Generator, anatomy: Anatomy) -> list[Lesion]:
    """One to four opacities, each centred inside a lung field."""
    lesions = []
    count = int(rng.integers(1, 5))
    sides = rng.choice([0, 1], size=count) if rng.random() < 0.6 else np.full(count, rng.integers(0, 2))
    for side in sides:
        center = _random_point_in_lung(rng, anatomy, int(side))
        kind = "consolidation" if rng.random() < 0.6 else "ground_glass"
        density = rng.uniform(0.18, 0.32) if kind == "consolidation" else rng.uniform(0.08, 0.15)
        lesions.append(Lesion(center, float(rng.uniform(0.08, 0.24)), float(density), kind, int(rng.integers(2**31))))
    return lesions


def _random_point_in_lung(rng: np.random.Generator, anatomy: Anatomy, side: int) -> tuple[float, float]:
    for _ in range(1000):
        x = anatomy.lung_center_x[side] + rng.uniform(-1, 1) * anatomy.lung_half_width[side]
        y = rng.uniform(anatomy.lung_apex_y[side], anatomy.dome_base_y[side])
        if _lung_masks(anatomy, np.array([[x]]), np.array([[y]]))[side][0, 0] > 0.99:
            return float(x), float(y)
    raise RuntimeError("could not place a lesion inside the lung")  # never seen in practice


# --- geometry, evaluated on a coordinate grid -------------------------------------


def _smooth_inside(signed_distance: np.ndarray, softness: float) -> np.ndarray:
    """1 inside (negative distance), 0 outside, with a soft edge of width ``softness``."""
    return 1.0 / (1.0 + np.exp(np.clip(signed_distance / softness, -50, 50)))


def _ellipse_distance(x, y, cx, cy, ax, ay, angle=0.0):
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    return (np.sqrt((u / ax) ** 2 + (v / ay) ** 2) - 1.0) * min(ax, ay)


def _heart(anatomy: Anatomy, x, y):
    (cx, cy), (ax, ay) = anatomy.heart_center, anatomy.heart_axes
    return _smooth_inside(_ellipse_distance(x, y, cx, cy, ax, ay, anatomy.heart_angle), 0.01)


def _mediastinum(anatomy: Anatomy, x, y):
    # Widens from the upper mediastinum towards the heart.
    half_width = anatomy.mediastinum_half_width * (1.0 + 0.4 * np.clip((y + 0.6) / 0.8, 0, 1))
    return _smooth_inside(np.abs(x - 0.02) - half_width, 0.012) * _smooth_inside(-(y + 0.95), 0.02)


def _lung_masks(anatomy: Anatomy, x, y) -> tuple[np.ndarray, np.ndarray]:
    masks = []
    for side in (0, 1):
        cx, half_width = anatomy.lung_center_x[side], anatomy.lung_half_width[side]
        apex, base = anatomy.lung_apex_y[side], anatomy.dome_base_y[side]
        cy = (apex + base) / 2 + 0.08
        shape = _ellipse_distance(x, y, cx, cy, half_width, (base - apex) / 2 + 0.1)
        # Diaphragm dome: highest in the lung's middle, lowest at the costophrenic angle.
        across = np.clip((x - cx) / half_width, -1.3, 1.3)
        dome_y = base - anatomy.dome_height[side] * np.clip(1.0 - across**2, 0, 1)
        lung = _smooth_inside(shape, 0.012) * _smooth_inside(y - dome_y, 0.012)
        masks.append(lung)
    cut = 1.0 - np.maximum(_heart(anatomy, x, y), _mediastinum(anatomy, x, y))
    return masks[0] * cut, masks[1] * cut


def _band_along_curve(y, curve_y, half_thickness, softness=0.008):
    return _smooth_inside(np.abs(y - curve_y) - half_thickness, softness)


def _ribs(anatomy: Anatomy, x, y):
    ribs = np.zeros_like(x)
    for side, sign in ((0, -1.0), (1, 1.0)):
        reach = abs(anatomy.lung_center_x[side]) + anatomy.lung_half_width[side] + 0.06
        t = np.clip((sign * x - 0.05) / (reach - 0.05), 0, None)
        within = _smooth_inside(t - 1.0, 0.03) * _smooth_inside(-t, 0.02)
        for k in range(10):
            # Posterior ribs rise a little from the spine, then sweep down laterally.
            curve = anatomy.rib_start_y + k * anatomy.rib_spacing - 0.06 * np.sin(np.pi * 0.8 * t) + 0.32 * t**2
            ribs = np.maximum(ribs, _band_along_curve(y, curve, 0.018 + 0.01 * t) * within)
    return ribs


def _clavicles(anatomy: Anatomy, x, y):
    t = np.clip((np.abs(x) - 0.06) / 0.65, 0, None)
    curve = anatomy.clavicle_y - 0.12 * t + 0.08 * np.sin(np.pi * t)
    within = _smooth_inside(t - 1.0, 0.03) * _smooth_inside(-t, 0.02)
    return _band_along_curve(y, curve, 0.022) * within


def _spine(anatomy: Anatomy, x, y):
    column = _smooth_inside(np.abs(x - 0.0) - 0.065, 0.01)
    endplates = 0.75 + 0.25 * np.cos(2 * np.pi * (y - anatomy.rib_start_y) / anatomy.rib_spacing) ** 8
    return column * endplates


def _body(anatomy: Anatomy, x, y):
    # A rounded-rectangle thorax whose walls slope out from the neck to the shoulders.
    half_width = anatomy.thorax_half_width * np.clip(0.45 + 0.55 * (y + 1.05) / 0.35, 0.45, 1.0)
    return _smooth_inside(np.abs(x - anatomy.thorax_center_x) - half_width, 0.02)


def _texture(x, y, seed: int, low: float, high: float, waves: int = 10) -> np.ndarray:
    """A smooth random field defined in anatomy coordinates, roughly in [-1, 1]."""
    rng = np.random.default_rng(seed)
    field = np.zeros_like(x)
    for _ in range(waves):
        frequency = rng.uniform(low, high)
        angle = rng.uniform(0, np.pi)
        field += np.cos(frequency * (np.cos(angle) * x + np.sin(angle) * y) + rng.uniform(0, 2 * np.pi))
    return field / np.sqrt(waves / 2)


def opacity_map(lesions: list[Lesion], lungs: np.ndarray, x, y) -> np.ndarray:
    """Added attenuation of all lesions, zero outside the lung fields."""
    opacity = np.zeros_like(x)
    for lesion in lesions:
        distance = np.hypot(x - lesion.center[0], y - lesion.center[1]) / lesion.radius
        if lesion.kind == "consolidation":  # dense, patchy, fairly sharp-edged
            patchy = _smooth_inside(distance - 1.0 - 0.25 * _texture(x, y, lesion.texture_seed, 6, 18), 0.15)
        else:  # ground glass: faint, hazy, with soft edges
            patchy = np.exp(-(distance**2)) * (0.75 + 0.25 * _texture(x, y, lesion.texture_seed, 8, 20))
        opacity = np.maximum(opacity, lesion.density * np.clip(patchy, 0, 1))
    # Confine to the lung proper: nothing where the soft lung edge has faded below 1/4.
    return opacity * np.clip((lungs - 0.25) / 0.5, 0, 1)


# --- the findings mode's findings: geometry -----------------------------------------


@dataclass(frozen=True)
class Effusion:
    """Pleural fluid at one lung base, below a meniscus that climbs the chest wall."""

    side: int  # 0: image-left lung field, 1: image-right
    level: float  # height of the fluid above the diaphragm dome's top, at the lung's medial edge
    rise: float  # how much higher the meniscus reaches at the lateral chest wall
    fill: float  # share of the lung's air the fluid replaces (opacity: soft tissue at 1)


@dataclass(frozen=True)
class Edema:
    """Bilateral perihilar ("bat-wing") haze, sparing the lung periphery."""

    density: float
    spread: float  # lateral reach from the hila
    texture_seed: int


NORMAL_CTR = (0.38, 0.46)  # findings mode: cardiothoracic ratio of a normal heart
ENLARGED_CTR = (0.56, 0.66)  # and of an enlarged one (Cardiomegaly)


def heart_half_width(anatomy: Anatomy) -> float:
    """Half the heart ellipse's horizontal extent (the ellipse is tilted)."""
    (ax, ay), angle = anatomy.heart_axes, anatomy.heart_angle
    return float(np.hypot(ax * np.cos(angle), ay * np.sin(angle)))


def thoracic_width(anatomy: Anatomy) -> float:
    """Inner thoracic diameter: from one lung field's lateral edge to the other's."""
    return float((anatomy.lung_center_x[1] + anatomy.lung_half_width[1]) - (anatomy.lung_center_x[0] - anatomy.lung_half_width[0]))


def anatomy_cardiothoracic_ratio(anatomy: Anatomy) -> float:
    return 2 * heart_half_width(anatomy) / thoracic_width(anatomy)


def with_cardiothoracic_ratio(anatomy: Anatomy, ratio: float) -> Anatomy:
    """The same patient with the heart scaled (both axes) to the given ratio.

    An enlarged heart grows mostly towards the image's right (the left ventricle), so
    its centre moves a fifth of the growth that way; a shrunk one moves back alike.
    """
    scale = ratio / anatomy_cardiothoracic_ratio(anatomy)
    half = heart_half_width(anatomy)
    (cx, cy), (ax, ay) = anatomy.heart_center, anatomy.heart_axes
    return replace(anatomy, heart_center=(cx + 0.2 * half * (scale - 1), cy), heart_axes=(ax * scale, ay * scale))


def cardiothoracic_ratio(heart_mask: np.ndarray, lung_mask: np.ndarray) -> float:
    """The ratio as a reader measures it on the film: the heart's horizontal extent
    (its right and left borders' greatest distances from the midline, added; they may
    lie at different heights) over the inner thoracic diameter (the lung fields'
    horizontal extent)."""

    def extent(mask: np.ndarray) -> int:
        columns = np.flatnonzero(mask.any(axis=0))
        return int(columns[-1] - columns[0] + 1) if columns.size else 0

    return extent(heart_mask) / max(extent(lung_mask), 1)


def fluid_map(effusions: Sequence[Effusion], anatomy: Anatomy, lung_sides, x, y) -> np.ndarray:
    """Share of each lung pixel's air that pleural fluid replaces (0 where there is none)."""
    fluid = np.zeros_like(x)
    for effusion in effusions:
        side = effusion.side
        cx, half_width = anatomy.lung_center_x[side], anatomy.lung_half_width[side]
        # 0 at the lung's medial edge, 1 at the lateral chest wall.
        lateral = np.clip(0.5 + 0.5 * (x - cx) / half_width * (1 if side == 1 else -1), 0, 1)
        dome_top = anatomy.dome_base_y[side] - anatomy.dome_height[side]
        meniscus_y = dome_top - effusion.level - effusion.rise * lateral**2
        below = _smooth_inside(meniscus_y - y, 0.015)
        fluid = np.maximum(fluid, effusion.fill * lung_sides[side] * below)
    return fluid


def edema_map(edema: Edema, lungs: np.ndarray, x, y) -> np.ndarray:
    """Added attenuation of a perihilar haze, densest at the hila, zero outside the lung fields."""
    wings = np.exp(-(((np.abs(x) - 0.16) / edema.spread) ** 2) - ((y + 0.02) / 0.42) ** 2)
    haze = wings * (0.8 + 0.2 * _texture(x, y, edema.texture_seed, 6, 16))
    return edema.density * np.clip(haze, 0, 1) * np.clip((lungs - 0.25) / 0.5, 0, 1)


# --- rendering --------------------------------------------------------------------


@dataclass
class RenderedPhantom:
    image: np.ndarray  # (size, size) uint8
    lung_mask: np.ndarray  # (size, size) bool, lung fields as seen in the image
    opacity: np.ndarray  # (size, size) float, the lesions' added attenuation (0 for NORMAL)
    heart_mask: np.ndarray | None = None  # (size, size) bool, the whole cardiac silhouette
    fluid: np.ndarray | None = None  # (size, size) float in [0, 1], share of lung air replaced by pleural fluid
    edema: np.ndarray | None = None  # (size, size) float, the edema haze's added attenuation
    # Findings mode: for each finding the film shows, where its evidence is (bool masks):
    # Consolidation = lesions, Cardiomegaly = the heart, Effusion = the fluid, Edema = the haze.
    finding_masks: dict[str, np.ndarray] = field(default_factory=dict)


def _acquisition_grid(size: int, acquisition: Acquisition):
    """Anatomy coordinates of every pixel, after field of view, rotation and shift."""
    pixel = (np.arange(size) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(pixel, pixel)
    angle = np.deg2rad(acquisition.rotation_deg)
    cos, sin = np.cos(angle), np.sin(angle)
    x = (cos * u - sin * v) / acquisition.zoom + acquisition.shift[0]
    y = (sin * u + cos * v) / acquisition.zoom + acquisition.shift[1]
    return x, y


def render(
    anatomy: Anatomy,
    acquisition: Acquisition,
    lesions: list[Lesion],
    size: int,
    noise_seed: int,
    effusions: Sequence[Effusion] = (),
    edema: Edema | None = None,
) -> RenderedPhantom:
    x, y = _acquisition_grid(size, acquisition)
    left_lung, right_lung = _lung_masks(anatomy, x, y)
    lungs = np.maximum(left_lung, right_lung)
    heart = _heart(anatomy, x, y)
    # Pleural fluid replaces the lung's air: what stays aerated is darker, the rest dense.
    fluid = fluid_map(effusions, anatomy, (left_lung, right_lung), x, y) if effusions else None
    aerated = lungs if fluid is None else lungs - fluid
    body = _body(anatomy, x, y)
    # Vessels fan out from the hila: lung markings grow denser towards the middle.
    hilar = np.exp(-(((np.abs(x) - 0.18) / 0.25) ** 2) - ((y + 0.05) / 0.4) ** 2)
    markings = 0.03 * _texture(x, y, noise_seed % 7919, 20, 45) * aerated + 0.08 * hilar * aerated
    # Ribs show mostly against aerated lung; over the mediastinum they fade.
    ribs = 0.5 * _ribs(anatomy, x, y) * (0.3 + 0.7 * aerated)
    bone = anatomy.bone * (0.8 * _spine(anatomy, x, y) + np.maximum(_clavicles(anatomy, x, y), ribs))
    opacity = opacity_map(lesions, lungs, x, y)
    haze = edema_map(edema, lungs, x, y) if edema is not None else None
    added = opacity if haze is None else opacity + haze
    attenuation = (
        body * (anatomy.soft_tissue - anatomy.lung_air * aerated + 0.03 * heart)
        + markings
        + bone * (0.5 + 0.5 * body)
        + added
        + 0.04  # scatter: even air outside the patient is not perfectly black
    )
    image = np.clip(acquisition.exposure * attenuation + acquisition.offset, 0, 1) ** acquisition.gamma
    image = gaussian_filter(image, acquisition.blur_sigma_px)
    noise_rng = np.random.default_rng(noise_seed)
    image = image + acquisition.noise_std * np.sqrt(image + 0.05) * noise_rng.standard_normal(image.shape) * 4
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    pixels = _burn_in_marker(pixels, acquisition)
    return RenderedPhantom(pixels, lungs > 0.5, opacity, heart > 0.5, fluid, haze)


def _burn_in_marker(pixels: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    size = pixels.shape[0]
    canvas = Image.fromarray(pixels)
    draw = ImageDraw.Draw(canvas)
    font_size = max(8, size // 14)
    try:
        font = ImageFont.load_default(size=font_size)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed bitmap font
        font = ImageFont.load_default()
    margin = size // 20
    x = margin if acquisition.marker_corner == "left" else size - margin - font_size
    draw.text((x, margin), acquisition.marker, fill=250, font=font)
    return np.asarray(canvas, dtype=np.uint8)


# --- datasets ---------------------------------------------------------------------


def phantom_images_per_patient(rng: np.random.Generator) -> int:
    """Most patients have one film; some have follow-ups (up to five in all)."""
    return int(min(1 + rng.geometric(0.55) - 1, 5))


def patient_anatomy(seed: int, patient: int) -> Anatomy:
    return sample_anatomy(np.random.default_rng([seed, patient, 0]))


def film_draws(seed: int, patient: int, film: int, positive: bool) -> tuple[Anatomy, Acquisition, list[Lesion], int]:
    """Everything random about one film: anatomy per patient, the rest per film."""
    anatomy = patient_anatomy(seed, patient)
    film_rng = np.random.default_rng([seed, patient, film + 1])
    acquisition = sample_acquisition(film_rng)
    noise_seed = int(film_rng.integers(2**31))
    lesions = sample_lesions(film_rng, anatomy) if positive else []
    return anatomy, acquisition, lesions, noise_seed


def render_film(seed: int, patient: int, film: int, positive: bool, size: int) -> RenderedPhantom:
    """One film, fully determined by (seed, patient, film, positive)."""
    anatomy, acquisition, lesions, noise_seed = film_draws(seed, patient, film, positive)
    return render(anatomy, acquisition, lesions, size, noise_seed)


def plan_phantom_dataset(n: int, seed: int, positive_fraction: float = 0.5) -> list[tuple[int, int, bool]]:
    """(patient, film, positive) for ``n`` films; a patient's films share the label."""
    rng = np.random.default_rng([seed, 2**20])
    plan = []
    patient = 0
    while len(plan) < n:
        positive = bool(rng.random() < positive_fraction)
        for film in range(phantom_images_per_patient(rng)):
            if len(plan) < n:
                plan.append((patient, film, positive))
        patient += 1
    return plan


def _render_and_save(task) -> None:
    out_path, seed, patient, film, positive, size = task
    film_image = render_film(seed, patient, film, positive, size).image
    atomic_save_image(Image.fromarray(film_image), out_path, optimize=False)


def _run_tasks(function, tasks: list, workers: int | None, progress: bool, desc: str = "phantoms") -> None:
    """Render and save films on ``workers`` processes (two unless told; a few films in this one)."""
    for _ in parallel_map(function, tasks, workers or 2, progress, desc=desc, chunksize=8):
        pass


def _check_size(n: int, size: int) -> None:
    if n < 1 or size < 32:
        raise CxrsslError(f"phantom: need --n >= 1 and --size >= 32 (got n={n}, size={size})")


def write_phantom_dataset(
    out_dir: str | Path,
    n: int = 400,
    size: int = 256,
    seed: int = 0,
    positive_fraction: float = 0.5,
    workers: int | None = None,
    progress: bool = True,
    findings: bool | Sequence[str] = False,
    prevalence: Mapping[str, float] | None = None,
    co_occurrence: Mapping[tuple[str, str], float] | None = None,
) -> Path:
    """Write ``n`` PNG films, ``labels.csv`` (a manifest) and ``contact_sheet.png``.

    Binary mode (``findings=False``, the default): ``label`` is ``PNEUMONIA`` or
    ``NORMAL`` for a share ``positive_fraction`` of patients.

    Findings mode (``findings=True`` for all of ``FINDINGS``, or a list of their
    names): ``label`` is empty and a ``findings`` column holds the film's findings in
    the NIH form (names joined by ``|`` in sorted order, or ``No Finding``), drawn per
    patient with ``prevalence`` (default ``DEFAULT_PREVALENCE``) and ``co_occurrence``
    (default ``DEFAULT_CO_OCCURRENCE``; see ``FindingsModel``); ``positive_fraction``
    is not used. ``render_findings_film(seed, patient, film, findings, size)`` redraws
    any film with its per-finding masks (patient and film are in the file name).

    Returns the manifest path. The same arguments always give byte-identical files.
    """
    if findings is not False and findings is not None:
        return _write_findings_dataset(out_dir, n, size, seed, findings, prevalence, co_occurrence, workers, progress)
    _check_size(n, size)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    plan = plan_phantom_dataset(n, seed, positive_fraction)
    rows, tasks = [], []
    for patient, film, positive in plan:
        relative = f"images/patient{patient:05d}_film{film}.png"
        rows.append(ManifestRow(relative, f"patient{patient:05d}", POSITIVE if positive else NEGATIVE))
        tasks.append((out_dir / relative, seed, patient, film, positive, size))
    _run_tasks(_render_and_save, tasks, workers, progress)
    write_contact_sheet(out_dir, rows, out_dir / "contact_sheet.png")
    # The manifest goes last: its presence says the folder is complete.
    return write_manifest(Manifest(rows, out_dir), out_dir / "labels.csv")


def write_contact_sheet(root: Path, rows, out_path: Path, per_class: int = 6, tile: int = 160, groups: Mapping[str, list] | None = None) -> Path:
    """A grid a person can look at: one row of examples per class (or per group of rows), labelled."""
    if groups is None:
        groups = {label: [row for row in rows if row.label == label] for label in sorted({row.label for row in rows})}
    classes = list(groups)
    sheet = Image.new("L", (per_class * tile, len(classes) * (tile + 18)), color=30)
    draw = ImageDraw.Draw(sheet)
    for class_index, label in enumerate(classes):
        examples = list(groups[label])[:per_class]
        top = class_index * (tile + 18)
        draw.text((4, top + 3), label, fill=255)
        for column, row in enumerate(examples):
            with Image.open(root / row.path) as film:
                sheet.paste(film.convert("L").resize((tile, tile)), (column * tile, top + 18))
    atomic_save_image(sheet, out_path)
    return out_path


# --- findings mode: which findings each patient has ----------------------------------

FINDINGS = ("Consolidation", "Cardiomegaly", "Effusion", "Edema")
NO_FINDING = "No Finding"
DEFAULT_PREVALENCE = {"Consolidation": 0.3, "Cardiomegaly": 0.25, "Effusion": 0.2, "Edema": 0.15}
# Relative risks, P(B | A) / P(B | not A) before the prevalence of B is restored: heart
# failure (an enlarged heart with effusions and edema) and parapneumonic effusions.
DEFAULT_CO_OCCURRENCE = {("Cardiomegaly", "Effusion"): 3.0, ("Cardiomegaly", "Edema"): 4.0, ("Consolidation", "Effusion"): 1.5}


@dataclass(frozen=True)
class FindingsModel:
    """Patient-level findings: each with a marginal prevalence, some raised by others.

    A finding B whose parents A1, A2, ... (pairs ``(A, B)`` in ``co_occurrence``) are
    present has probability ``min(1, q_B * r_A1B * r_A2B * ...)``; ``q_B`` is solved so
    that B's marginal prevalence is exactly the requested one. Findings are drawn
    parents first; each compares its own uniform draw per patient with that
    probability, so the draws are reproducible from the seed and a finding's draw does
    not depend on which other findings are requested.
    """

    findings: tuple[str, ...]  # in drawing order: parents before children
    prevalence: dict[str, float]
    co_occurrence: dict[tuple[str, str], float]
    base: dict[str, float]  # q_B

    def probability(self, finding: str, present) -> float:
        risk = self.base[finding]
        for (parent, child), ratio in self.co_occurrence.items():
            if child == finding and parent in present:
                risk *= ratio
        return min(1.0, risk)


def findings_model(
    findings: bool | Sequence[str] = True,
    prevalence: Mapping[str, float] | None = None,
    co_occurrence: Mapping[tuple[str, str], float] | None = None,
) -> FindingsModel:
    """Check the request and solve the base risks. Co-occurrence pairs naming a finding
    that is not drawn are dropped (so a subset of ``FINDINGS`` works with the defaults)."""
    names = tuple(FINDINGS if findings is True else findings)
    unknown = [name for name in names if name not in FINDINGS]
    if unknown or not names or len(set(names)) != len(names):
        raise CxrsslError(f"phantom findings {list(names)}: name each once, from {', '.join(FINDINGS)}")
    given = dict(prevalence or {})
    extra = sorted(set(given) - set(names))
    if extra:
        raise CxrsslError(f"phantom prevalence for {', '.join(extra)}: not among the findings drawn ({', '.join(names)})")
    rates = {name: float(given.get(name, DEFAULT_PREVALENCE[name])) for name in names}
    bad = [f"{name}={rate}" for name, rate in rates.items() if not 0.0 <= rate <= 1.0]
    if bad:
        raise CxrsslError(f"phantom prevalence {', '.join(bad)}: use a share between 0 and 1")
    pairs = DEFAULT_CO_OCCURRENCE if co_occurrence is None else co_occurrence
    pairs = {(a, b): float(r) for (a, b), r in pairs.items() if a in names and b in names}
    if any(r <= 0 or a == b for (a, b), r in pairs.items()):
        raise CxrsslError(f"phantom co-occurrence {pairs}: relative risks must be > 0, between two different findings")
    # Parents first (Kahn's order, ties in FINDINGS order).
    order, remaining = [], [name for name in FINDINGS if name in names]
    while remaining:
        ready = [b for b in remaining if not any(child == b and parent in remaining for parent, child in pairs)]
        if not ready:
            raise CxrsslError(f"phantom co-occurrence {sorted(pairs)}: the pairs form a cycle")
        order.append(ready[0])
        remaining.remove(ready[0])
    # The joint law of the findings drawn so far, to solve each base risk exactly.
    model = FindingsModel(tuple(order), rates, pairs, {})
    joint = {frozenset(): 1.0}
    for name in order:
        multipliers = [(p, np.prod([r for (a, b), r in pairs.items() if b == name and a in state])) for state, p in joint.items()]
        low, high = 0.0, 1.0 / min(m for _, m in multipliers)
        for _ in range(80):
            q = (low + high) / 2
            if sum(p * min(1.0, q * m) for p, m in multipliers) < rates[name]:
                low = q
            else:
                high = q
        model.base[name] = (low + high) / 2
        joint_next: dict[frozenset, float] = {}
        for state, p in joint.items():
            risk = model.probability(name, state)
            joint_next[state | {name}] = joint_next.get(state | {name}, 0.0) + p * risk
            joint_next[state] = joint_next.get(state, 0.0) + p * (1 - risk)
        joint = joint_next
    return model


def patient_findings(seed: int, patient: int, model: FindingsModel) -> frozenset[str]:
    present: set[str] = set()
    for name in model.findings:
        draw = np.random.default_rng([seed, 2**20 + 1, patient, 1 + FINDINGS.index(name)]).random()
        if draw < model.probability(name, present):
            present.add(name)
    return frozenset(present)


def plan_phantom_findings(n: int, seed: int, model: FindingsModel | None = None) -> list[tuple[int, int, frozenset[str]]]:
    """(patient, film, findings) for ``n`` films; a patient's films share the findings.

    Each patient's film count and findings come from the patient's own draws, so a
    longer plan starts with the shorter one.
    """
    model = model or findings_model()
    plan = []
    patient = 0
    while len(plan) < n:
        count = phantom_images_per_patient(np.random.default_rng([seed, 2**20 + 1, patient, 0]))
        present = patient_findings(seed, patient, model)
        for film in range(count):
            if len(plan) < n:
                plan.append((patient, film, present))
        patient += 1
    return plan


def findings_text(present) -> str:
    """The NIH form: sorted names joined by ``|``, or ``No Finding``."""
    return "|".join(sorted(present)) or NO_FINDING


# --- findings mode: drawing and rendering one film ------------------------------------


def findings_anatomy(seed: int, patient: int, enlarged_heart: bool) -> Anatomy:
    """The patient's anatomy with the heart scaled to a normal or an enlarged ratio.

    The same uniform draw places the ratio in either range, so toggling Cardiomegaly
    changes the heart's size only.
    """
    draw = np.random.default_rng([seed, patient, 0, 3]).random()
    low, high = ENLARGED_CTR if enlarged_heart else NORMAL_CTR
    return with_cardiothoracic_ratio(patient_anatomy(seed, patient), low + draw * (high - low))


def sample_effusions(patient_rng: np.random.Generator, film_rng: np.random.Generator) -> tuple[Effusion, ...]:
    """One side (60 %) or both; the fluid level varies a little from film to film."""
    sides = (0, 1) if patient_rng.random() < 0.4 else (int(patient_rng.integers(0, 2)),)
    effusions = []
    for side in sides:
        level = patient_rng.uniform(0.02, 0.16) * film_rng.uniform(0.85, 1.15)
        effusions.append(Effusion(side, float(level), float(patient_rng.uniform(0.12, 0.24)), float(patient_rng.uniform(0.8, 0.95))))
    return tuple(effusions)


def sample_edema(patient_rng: np.random.Generator, film_rng: np.random.Generator) -> Edema:
    density = patient_rng.uniform(0.14, 0.22) * film_rng.uniform(0.85, 1.15)
    return Edema(float(density), float(patient_rng.uniform(0.24, 0.34)), int(film_rng.integers(2**31)))


@dataclass(frozen=True)
class FindingsDraws:
    anatomy: Anatomy
    acquisition: Acquisition
    lesions: list[Lesion]
    effusions: tuple[Effusion, ...]
    edema: Edema | None
    noise_seed: int


def findings_film_draws(seed: int, patient: int, film: int, present) -> FindingsDraws:
    """Everything random about one findings-mode film.

    Acquisition and noise are the binary mode's for the same (seed, patient, film);
    each finding has its own random stream, so adding or removing one finding leaves
    the rest of the film as it was (lesions move only if the heart's size changes).
    """
    anatomy = findings_anatomy(seed, patient, "Cardiomegaly" in present)
    film_rng = np.random.default_rng([seed, patient, film + 1])
    acquisition = sample_acquisition(film_rng)
    noise_seed = int(film_rng.integers(2**31))

    def streams(k):
        return np.random.default_rng([seed, patient, 0, k]), np.random.default_rng([seed, patient, film + 1, k])

    lesions = sample_lesions(streams(1)[1], anatomy) if "Consolidation" in present else []
    effusions = sample_effusions(*streams(2)) if "Effusion" in present else ()
    edema = sample_edema(*streams(4)) if "Edema" in present else None
    return FindingsDraws(anatomy, acquisition, lesions, effusions, edema, noise_seed)


def render_findings_film(seed: int, patient: int, film: int, present, size: int) -> RenderedPhantom:
    """One findings-mode film, fully determined by (seed, patient, film, findings),
    with ``finding_masks`` for each finding it shows."""
    draws = findings_film_draws(seed, patient, film, present)
    rendered = render(draws.anatomy, draws.acquisition, draws.lesions, size, draws.noise_seed, draws.effusions, draws.edema)
    masks = {
        "Consolidation": rendered.opacity > 0.01,
        "Cardiomegaly": rendered.heart_mask,
        # The fluid inside the lung fields (its soft lower edge fades over a few pixels).
        "Effusion": (rendered.fluid > 0.05) & rendered.lung_mask if rendered.fluid is not None else None,
        "Edema": rendered.edema > 0.01 if rendered.edema is not None else None,
    }
    return replace(rendered, finding_masks={name: masks[name] for name in sorted(present)})


def _save_film(image: np.ndarray, out_path: Path) -> None:
    if Path(out_path).suffix.lower() in (".jpg", ".jpeg"):
        atomic_save_image(Image.fromarray(image), out_path, quality=90)
    else:
        atomic_save_image(Image.fromarray(image), out_path, optimize=False)


def _render_findings_and_save(task) -> None:
    out_path, seed, patient, film, present, size = task
    _save_film(render_findings_film(seed, patient, film, present, size).image, out_path)


def _write_findings_dataset(out_dir, n, size, seed, findings, prevalence, co_occurrence, workers, progress) -> Path:
    _check_size(n, size)
    model = findings_model(findings, prevalence, co_occurrence)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows, tasks = [], []
    for patient, film, present in plan_phantom_findings(n, seed, model):
        relative = f"images/patient{patient:05d}_film{film}.png"
        rows.append(ManifestRow(relative, f"patient{patient:05d}", "", "", {"findings": findings_text(present)}))
        tasks.append((out_dir / relative, seed, patient, film, tuple(sorted(present)), size))
    _run_tasks(_render_findings_and_save, tasks, workers, progress)
    groups = {name: [row for row in rows if name in row.extra["findings"].split("|")] for name in (*model.findings, NO_FINDING)}
    write_contact_sheet(out_dir, rows, out_dir / "contact_sheet.png", groups=groups)
    return write_manifest(Manifest(rows, out_dir), out_dir / "labels.csv")


# --- findings mode: a CheXpert-shaped tree ---------------------------------------------

CHEXPERT_FOLDER = "CheXpert-v1.0-small"
CHEXPERT_HEADER = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS)  # train.csv and valid.csv, as the adapter reads them
CHEXPERT_OBSERVATIONS = CHEXPERT_HEADER[5:]
CHEXPERT_COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
# CheXpert column -> the phantom finding it reports. Atelectasis is not drawn: it is
# written 0.0 or blank (never positive, never uncertain).
CHEXPERT_FINDINGS = {"Cardiomegaly": "Cardiomegaly", "Consolidation": "Consolidation", "Edema": "Edema", "Pleural Effusion": "Effusion"}
CHEXPERT_FIRST_VALID_PATIENT = 64541  # the real valid set's first patient id


@dataclass(frozen=True)
class CheXpertPhantomFilm:
    path: str  # the CSV's Path column, relative to the folder holding CheXpert-v1.0-small/
    patient_id: str  # patientNNNNN
    split: str  # "train" or "valid"
    findings: frozenset[str]  # the phantom findings the film truly shows
    row: dict[str, str]  # the CSV row as written (CHEXPERT_HEADER keys)


@dataclass(frozen=True)
class CheXpertPhantom:
    root: Path  # the CheXpert-v1.0-small folder (holding train.csv, valid.csv, train/, valid/)
    train_csv: Path
    valid_csv: Path
    films: list[CheXpertPhantomFilm]


def _chexpert_value(present: bool, rng: np.random.Generator, uncertain_fraction: float, blank_fraction: float) -> str:
    # Both draws always happen, so the labels of one column do not shift the others'.
    uncertain, blank = rng.random() < uncertain_fraction, rng.random() < blank_fraction
    if uncertain:
        return "-1.0"
    return "1.0" if present else ("" if blank else "0.0")


def write_phantom_chexpert(
    root: str | Path,
    n: int = 400,
    seed: int = 0,
    size: int = 256,
    uncertain_fraction: float = 0.1,
    valid_fraction: float = 0.2,
    blank_fraction: float = 0.5,
    findings: bool | Sequence[str] = True,
    prevalence: Mapping[str, float] | None = None,
    co_occurrence: Mapping[tuple[str, str], float] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CheXpertPhantom:
    """Write ``n`` frontal films as ``root/CheXpert-v1.0-small/{train,valid}/patientNNNNN/studyK/view1_frontal.jpg``
    with ``train.csv`` and ``valid.csv`` in CheXpert's own 19-column format.

    Films and findings are the findings mode's (``plan_phantom_findings``; a patient's
    follow-up films are study1, study2, ...). A share ``valid_fraction`` of patients
    (rounded) goes to valid/, numbered from patient64541 as in the real set; train
    patients are numbered from patient00001. Labels, per film:

    - train.csv: a drawn finding's column (``CHEXPERT_FINDINGS``) is 1.0, else 0.0 or,
      for a share ``blank_fraction`` of the negatives, blank (not mentioned); then a
      share ``uncertain_fraction`` of the positive and of the negative entries is
      replaced by -1.0 (uncertain). Atelectasis is never drawn: 0.0 or blank.
      Lung Opacity (CheXpert's parent of Consolidation and Edema) is 1.0 when either
      is written 1.0, else -1.0 when either is written -1.0, else blank. No Finding is
      1.0 when no observation is written 1.0 or -1.0, else blank. Other columns blank.
    - valid.csv: radiologist-style consensus: every observation 0.0 or 1.0 from the
      true findings (no -1.0, no blank).

    Sex (Female/Male) and Age (18-90, one year older per follow-up) are per patient,
    AP/PA per film (AP four times in five; it does not change the image).
    Returns the CSV paths and, per film, its Path, true findings and written row. The
    CSVs go last: their presence says the tree is complete.
    """
    _check_size(n, size)
    for name, share in (("uncertain_fraction", uncertain_fraction), ("valid_fraction", valid_fraction), ("blank_fraction", blank_fraction)):
        if not 0.0 <= share <= 1.0:
            raise CxrsslError(f"phantom chexpert: {name}={share}; use a share between 0 and 1")
    model = findings_model(findings, prevalence, co_occurrence)
    plan = plan_phantom_findings(n, seed, model)
    patients = sorted({patient for patient, _, _ in plan})
    n_valid = int(round(valid_fraction * len(patients)))
    order = np.random.default_rng([seed, 2**20 + 2]).permutation(len(patients))
    valid = {patients[i] for i in order[:n_valid]}
    numbers, next_number = {}, {"train": 1, "valid": CHEXPERT_FIRST_VALID_PATIENT}
    for patient in patients:
        split = "valid" if patient in valid else "train"
        numbers[patient] = (split, next_number[split])
        next_number[split] += 1
    folder = Path(root) / CHEXPERT_FOLDER
    films, tasks = [], []
    for patient, film, present in plan:
        split, number = numbers[patient]
        patient_rng = np.random.default_rng([seed, 2**20 + 3, patient])
        sex, age = ("Female", "Male")[int(patient_rng.integers(0, 2))], int(patient_rng.integers(18, 91)) + film
        film_rng = np.random.default_rng([seed, 2**20 + 4, patient, film])
        path = f"{CHEXPERT_FOLDER}/{split}/patient{number:05d}/study{film + 1}/view1_frontal.jpg"
        row = dict.fromkeys(CHEXPERT_HEADER, "")
        row.update({"Path": path, "Sex": sex, "Age": str(age), "Frontal/Lateral": "Frontal"})
        row["AP/PA"] = "AP" if film_rng.random() < 0.8 else "PA"
        truth = {column: CHEXPERT_FINDINGS[column] in present for column in CHEXPERT_FINDINGS}
        if split == "valid":
            row.update({column: "0.0" for column in CHEXPERT_OBSERVATIONS})
            row.update({column: "1.0" for column, positive in truth.items() if positive})
            row["Lung Opacity"] = "1.0" if truth["Consolidation"] or truth["Edema"] else "0.0"
            row["No Finding"] = "0.0" if present else "1.0"
        else:
            for column in CHEXPERT_FINDINGS:
                if CHEXPERT_FINDINGS[column] in model.findings:
                    row[column] = _chexpert_value(truth[column], film_rng, uncertain_fraction, blank_fraction)
            row["Atelectasis"] = "" if film_rng.random() < blank_fraction else "0.0"
            children = [row["Consolidation"], row["Edema"]]
            row["Lung Opacity"] = "1.0" if "1.0" in children else "-1.0" if "-1.0" in children else ""
            mentioned = any(row[column] in ("1.0", "-1.0") for column in CHEXPERT_OBSERVATIONS)
            row["No Finding"] = "" if mentioned else "1.0"
        films.append(CheXpertPhantomFilm(path, f"patient{number:05d}", split, present, row))
        (Path(root) / path).parent.mkdir(parents=True, exist_ok=True)
        tasks.append((Path(root) / path, seed, patient, film, tuple(sorted(present)), size))
    _run_tasks(_render_findings_and_save, tasks, workers, progress, desc="chexpert phantoms")
    tables = {}
    for split in ("valid", "train"):
        rows = ([film.row[column] for column in CHEXPERT_HEADER] for film in films if film.split == split)
        # read back by `cxrssl index chexpert`: written as the real set's, no formula guard
        tables[split] = atomic_write_text(folder / f"{split}.csv", csv_text(CHEXPERT_HEADER, rows, for_spreadsheets=False))
    return CheXpertPhantom(folder, tables["train"], tables["valid"], films)


# --- command-line helpers ---------------------------------------------------------------


def parse_findings_option(text: str) -> tuple[str, ...]:
    """``--findings``: ``all`` or comma-separated names from ``FINDINGS`` (any case)."""
    if text.strip().lower() == "all":
        return FINDINGS
    by_lower = {name.lower(): name for name in FINDINGS}
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name.lower() not in by_lower]
    if unknown or not names:
        raise CxrsslError(f"--findings {text!r}: use 'all' or names from {', '.join(FINDINGS)}, comma-separated")
    return tuple(by_lower[name.lower()] for name in names)


def parse_prevalence_option(text: str) -> dict[str, float]:
    """``--prevalence``: ``Name=share`` pairs, comma-separated (e.g. ``Effusion=0.3,Edema=0.1``)."""
    by_lower = {name.lower(): name for name in FINDINGS}
    shares = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, value = part.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = None
        if name.strip().lower() not in by_lower or share is None:
            raise CxrsslError(f"--prevalence {text!r}: write Name=share pairs, e.g. Effusion=0.3, with names from {', '.join(FINDINGS)}")
        shares[by_lower[name.strip().lower()]] = share
    return shares
