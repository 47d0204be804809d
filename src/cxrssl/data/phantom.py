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

The geometry is evaluated on a coordinate grid that the acquisition has already
rotated, shifted and scaled, so the lung mask and the opacity map returned with an
image are exact, not resampled. Coordinates: x from -1 (image left = patient's
right) to 1, y from -1 (top) to 1; the heart sits on the image's right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import gaussian_filter

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


# --- rendering --------------------------------------------------------------------


@dataclass
class RenderedPhantom:
    image: np.ndarray  # (size, size) uint8
    lung_mask: np.ndarray  # (size, size) bool, lung fields as seen in the image
    opacity: np.ndarray  # (size, size) float, the lesions' added attenuation (0 for NORMAL)


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
    anatomy: Anatomy, acquisition: Acquisition, lesions: list[Lesion], size: int, noise_seed: int
) -> RenderedPhantom:
    x, y = _acquisition_grid(size, acquisition)
    left_lung, right_lung = _lung_masks(anatomy, x, y)
    lungs = np.maximum(left_lung, right_lung)
    body = _body(anatomy, x, y)
    # Vessels fan out from the hila: lung markings grow denser towards the middle.
    hilar = np.exp(-(((np.abs(x) - 0.18) / 0.25) ** 2) - ((y + 0.05) / 0.4) ** 2)
    markings = 0.03 * _texture(x, y, noise_seed % 7919, 20, 45) * lungs + 0.08 * hilar * lungs
    # Ribs show mostly against aerated lung; over the mediastinum they fade.
    ribs = 0.5 * _ribs(anatomy, x, y) * (0.3 + 0.7 * lungs)
    bone = anatomy.bone * (0.8 * _spine(anatomy, x, y) + np.maximum(_clavicles(anatomy, x, y), ribs))
    opacity = opacity_map(lesions, lungs, x, y)
    attenuation = (
        body * (anatomy.soft_tissue - anatomy.lung_air * lungs + 0.03 * _heart(anatomy, x, y))
        + markings
        + bone * (0.5 + 0.5 * body)
        + opacity
        + 0.04  # scatter: even air outside the patient is not perfectly black
    )
    image = np.clip(acquisition.exposure * attenuation + acquisition.offset, 0, 1) ** acquisition.gamma
    image = gaussian_filter(image, acquisition.blur_sigma_px)
    noise_rng = np.random.default_rng(noise_seed)
    image = image + acquisition.noise_std * np.sqrt(image + 0.05) * noise_rng.standard_normal(image.shape) * 4
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    pixels = _burn_in_marker(pixels, acquisition)
    return RenderedPhantom(pixels, lungs > 0.5, opacity)


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


@dataclass(frozen=True)
class PhantomRecord:
    path: str
    patient_id: str
    label: str


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
    Image.fromarray(film_image).save(out_path, optimize=False)


def write_phantom_dataset(
    out_dir: str | Path,
    n: int = 400,
    size: int = 256,
    seed: int = 0,
    positive_fraction: float = 0.5,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write ``n`` PNG films, ``labels.csv`` (a manifest) and ``contact_sheet.png``.

    Returns the manifest path. The same arguments always give byte-identical files.
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from cxrssl.data.manifest import Manifest, ManifestRow, write_manifest
    from cxrssl.errors import CxrsslError

    if n < 1 or size < 32:
        raise CxrsslError(f"phantom: need --n >= 1 and --size >= 32 (got n={n}, size={size})")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    plan = plan_phantom_dataset(n, seed, positive_fraction)
    rows, tasks = [], []
    for patient, film, positive in plan:
        relative = f"images/patient{patient:05d}_film{film}.png"
        rows.append(ManifestRow(relative, f"patient{patient:05d}", POSITIVE if positive else NEGATIVE))
        tasks.append((out_dir / relative, seed, patient, film, positive, size))
    workers = workers or 2
    bar = tqdm(total=len(tasks), desc="phantoms", unit="img", leave=False, disable=not progress)
    if workers > 1 and len(tasks) > 16:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_render_and_save, tasks, chunksize=8):
                bar.update()
    else:
        for task in tasks:
            _render_and_save(task)
            bar.update()
    bar.close()
    write_contact_sheet(out_dir, rows, out_dir / "contact_sheet.png")
    # The manifest goes last: its presence says the folder is complete.
    return write_manifest(Manifest(rows, out_dir), out_dir / "labels.csv")


def write_contact_sheet(root: Path, rows, out_path: Path, per_class: int = 6, tile: int = 160) -> Path:
    """A grid a person can look at: one row of examples per class, labelled."""
    classes = sorted({row.label for row in rows})
    sheet = Image.new("L", (per_class * tile, len(classes) * (tile + 18)), color=30)
    draw = ImageDraw.Draw(sheet)
    for class_index, label in enumerate(classes):
        examples = [row for row in rows if row.label == label][:per_class]
        top = class_index * (tile + 18)
        draw.text((4, top + 3), label, fill=255)
        for column, row in enumerate(examples):
            with Image.open(root / row.path) as film:
                sheet.paste(film.convert("L").resize((tile, tile)), (column * tile, top + 18))
    sheet.save(out_path)
    return out_path
