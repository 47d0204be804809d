"""Time-bounded fuzzing of everything that reads a user's bytes.

The only outcomes allowed: a manifest or a ManifestError; a decoded uint8 image or an
UnreadableImage with a reason; a checkpoint or a CheckpointError / WeightsError. Any
other exception is a traceback a user would see.
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cxrssl.checkpoint import CheckpointError, load_backbone
from cxrssl.data.findings import finding_labels
from cxrssl.data.io import UnreadableImage, load_grayscale
from cxrssl.data.manifest import read_manifest
from cxrssl.errors import CxrsslError
from cxrssl.weights import WeightsError, read_state_dict

# Examples per test and whether they are drawn afresh come from the profile in
# tests/conftest.py: CI replays the same examples every run; `--hypothesis-profile=explore`
# draws new ones (a failure found there becomes a case in the tests below).
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    mutable = bytearray(data)
    for position, value in flips:
        if mutable:
            mutable[position % len(mutable)] = value
    return bytes(mutable[:cut] if cut is not None else mutable)


def _png(bits: int) -> bytes:
    buffer = io.BytesIO()
    pixels = (np.arange(64 * 48).reshape(48, 64) % (256 if bits == 8 else 4096)).astype(np.uint8 if bits == 8 else np.uint16)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 48).reshape(48, 64) % 256).astype(np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _dicom(tmp: Path) -> bytes:
    pytest.importorskip("pydicom")
    from tests.dicom import write_dicom

    return write_dicom(
        tmp / "seed.dcm", (np.arange(32 * 24).reshape(24, 32) * 7).astype(np.uint16), WindowCenter="800", WindowWidth="1600"
    ).read_bytes()


SEEDS = {"png8": lambda tmp: _png(8), "png16": lambda tmp: _png(16), "jpeg": lambda tmp: _jpeg(), "dcm": _dicom}
mutations = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=12)
cuts = st.one_of(st.none(), st.integers(0, 4096))


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_mutated_images_decode_or_are_listed_with_a_reason(tmp_path, kind):
    seed = SEEDS[kind](tmp_path)
    path = tmp_path / f"fuzzed.{'dcm' if kind == 'dcm' else kind[:3] if kind != 'jpeg' else 'jpg'}"

    @FUZZ
    @given(flips=mutations, cut=cuts)
    def check(flips, cut):
        path.write_bytes(_mutate(seed, flips, cut))
        try:
            pixels = load_grayscale(path)
        except UnreadableImage as error:
            assert str(error)
            return
        assert pixels.dtype == np.uint8 and pixels.ndim == 2 and pixels.size > 0

    check()


@FUZZ
@given(
    header=st.sampled_from(
        [
            "path,patient_id,label",
            "path,patient_id,label,split",
            "patient_id,label",
            "",
            "path;patient_id;label",
            "path,patient_id,findings",
            "path,patient_id,label,finding:Edema,finding:Pleural Effusion",
            "path,patient_id,finding:,findings",
        ]
    ),
    cells=st.lists(st.lists(st.text(max_size=40), min_size=0, max_size=5), max_size=6),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "utf-8-sig"]),
    noise=st.binary(max_size=30),
)
def test_any_manifest_bytes_give_a_manifest_or_one_clear_error(tmp_path_factory, header, cells, encoding, noise):
    folder = tmp_path_factory.mktemp("manifest")
    text = header + "\n" + "\n".join(",".join(row) for row in cells)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8", errors="replace")
    path = folder / "labels.csv"
    path.write_bytes(data + noise)
    try:
        manifest = read_manifest(path, check_files=False)
    except CxrsslError as error:
        assert "\n" not in str(error).strip() and str(path) in str(error)
        return
    finding_labels(manifest)  # a manifest that reads has findings that parse


class Blob(bytes):
    """Bytes that print short, so a falsifying example stays readable."""

    def __repr__(self):
        return f"<{len(self)} bytes>"


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory):
    import torch

    from cxrssl.checkpoint import save_weights
    from cxrssl.models import build_backbone

    torch.manual_seed(0)
    weights = {f"backbone.{k}": v for k, v in build_backbone("resnet18").state_dict().items()}
    folder = tmp_path_factory.mktemp("checkpoint")
    path = save_weights(folder / "epoch_0001.json", weights, {"format": "cxrssl-checkpoint/1", "arch": "resnet18", "image_size": 32, "epoch": 1})
    return Blob(path.read_bytes()), Blob(path.with_suffix(".safetensors").read_bytes())


@FUZZ
@given(
    json_flips=mutations,
    json_cut=st.one_of(st.none(), st.integers(0, 400)),
    weight_flips=mutations,
    weight_cut=st.one_of(st.none(), st.integers(0, 20000)),
)
def test_mutated_checkpoints_load_or_are_refused_with_one_line(tmp_path_factory, real_checkpoint, json_flips, json_cut, weight_flips, weight_cut):
    folder = tmp_path_factory.mktemp("fuzzed")
    metadata, weights = real_checkpoint
    (folder / "epoch_0001.json").write_bytes(_mutate(metadata, json_flips, json_cut))
    (folder / "epoch_0001.safetensors").write_bytes(_mutate(weights, weight_flips, weight_cut))
    try:
        backbone, _ = load_backbone(folder / "epoch_0001.json")
    except CheckpointError as error:
        assert "\n" not in str(error).strip()
        return
    assert backbone.conv1.weight.shape == (64, 1, 7, 7)


@FUZZ
@given(flips=mutations, cut=st.one_of(st.none(), st.integers(0, 5000)))
def test_mutated_weight_files_for_init_are_refused_with_one_line(tmp_path_factory, flips, cut):
    import torch

    folder = tmp_path_factory.mktemp("init")
    source = folder / "seed.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.bias": torch.zeros(64)}, source)
    path = folder / "weights.pth"
    path.write_bytes(_mutate(source.read_bytes(), flips, cut))
    try:
        read_state_dict(path, "resnet18")
    except WeightsError as error:
        assert "\n" not in str(error).strip()


def test_metadata_that_is_json_but_not_an_object_or_has_wrong_types(real_checkpoint, tmp_path):
    metadata, weights = real_checkpoint
    (tmp_path / "epoch_0001.safetensors").write_bytes(weights)
    good = json.loads(metadata)
    damaged = [
        {"weights": None},
        {"epoch": [1]},
        {"arch": " esnet18"},  # one flipped byte, found by the fuzzer
        {"arch": ["resnet18"]},
        {"image_size": "32"},
        {"image_size": 0},
        {"method": ["simclr"]},
        {"config": []},
        {"config": {"fraction": "half"}},
    ]
    for text in ("null", "[]", '"text"', *(json.dumps({**good, **change}) for change in damaged)):
        (tmp_path / "epoch_0001.json").write_text(text)
        with pytest.raises(CheckpointError):
            load_backbone(tmp_path / "epoch_0001.json")
