"""Hostile and careless camera RAW input to `mobilevision isp` / ``process_raw_file``: truncated and stub
files, mosaics LibRaw could not really decode, orientation, and arguments that must fail before torch loads."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilevision.cli import main
from mobilevision.data.raw import read_raw, saturation_level
from mobilevision.errors import DataError, MobileVisionError
from mobilevision.runtime.tasks.isp import apply_flip
from mobilevision.testing import write_dng

H, W = 96, 136
BLACK, WHITE = 64, 1023


def _scene(seed: int = 0, black: int = BLACK, low: float = 40, high: float = WHITE, noise: float = 4) -> np.ndarray:
    """Smooth scene plus sensor noise, clipped to [0, WHITE] (10-bit)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(low, high, (H // 8, W // 8)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((W, H), Image.Resampling.BILINEAR))
    return np.clip(smooth + rng.normal(0, noise, (H, W)), 0, WHITE).astype(np.uint16)


def _set_orientation(path: Path, value: int) -> Path:
    """Rewrite the TIFF Orientation tag (274) of a pidng DNG (little-endian, one IFD) in place."""
    data = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == 274:
            struct.pack_into("<H", data, entry + 8, value)
            path.write_bytes(bytes(data))
            return path
    raise AssertionError("no Orientation tag")


def _truncated(good: Path, path: Path, fraction: float) -> Path:
    data = good.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _finding_stub() -> np.ndarray:
    """The reported 13 KB DNG: 88 % exact zeros, the rest values far above the white level."""
    m = np.zeros((H, W), np.uint16)
    m[: H * 12 // 100] = np.random.default_rng(3).integers(2000, 65535, (H * 12 // 100, W))
    return m


def _zero_tail() -> np.ndarray:
    """A good top 60 % of rows and a zero-filled bottom, as a reader that stopped early leaves it."""
    m = _scene(4)
    m[H * 6 // 10:] = 0
    return m


def _scattered_fill() -> np.ndarray:
    """85 % of the pixels, scattered, hold one value: the scene survives only in holes."""
    m = _scene(5)
    m[np.random.default_rng(5).uniform(size=(H, W)) < 0.85] = 300
    return m


def _hot_block() -> np.ndarray:
    """A good scene with a block of values beyond the 10-bit white level (a misread stretch)."""
    m = _scene(6)
    m[10:30, 20:60] = 9000
    return m


BAD_MOSAICS = {  # id: (mosaic, words the one-line error must hold)
    "all-zeros": (lambda: np.zeros((H, W), np.uint16), ("every pixel", "0")),
    "constant-500": (lambda: np.full((H, W), 500, np.uint16), ("every pixel", "500")),
    "88pct-zeros-above-white": (_finding_stub, ("above the white level",)),
    "block-above-white": (_hot_block, ("above the white level",)),
    "zero-filled-bottom-rows": (_zero_tail, ("rows", "missing")),
    "85pct-one-value-scattered": (_scattered_fill, ("300", "missing")),
}
TRUNCATED = {"truncated-20pct": 0.2, "truncated-50pct": 0.5, "truncated-99pct": 0.99, "header-only": 0.01}
PLAUSIBLE = {  # real photos the rules must not refuse
    "scene": lambda: _scene(0),
    "dark-noise-black-64": lambda: _scene(7, low=BLACK - 2, high=BLACK + 2, noise=2),
    "dark-clipped-black-0": lambda: _scene(8, low=0, high=1, noise=1.5),  # ~60 % exact zeros
    "70pct-saturated": lambda: np.where(np.random.default_rng(9).uniform(size=(H, W)) < 0.7, WHITE, _scene(9)),
}


@pytest.fixture(scope="module")
def raws(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("raws")
    files = {"good": write_dng(root / "good.dng", _scene(0), black_level=BLACK, white_level=WHITE)}
    for name, (make, _) in BAD_MOSAICS.items():
        files[name] = write_dng(root / f"{name}.dng", make(), black_level=BLACK, white_level=WHITE)
    for name, fraction in TRUNCATED.items():
        files[name] = _truncated(files["good"], root / f"{name}.dng", fraction)
    for name, make in PLAUSIBLE.items():
        black = 0 if name.endswith("black-0") else BLACK
        files[name] = write_dng(root / f"{name}.dng", make(), black_level=black, white_level=WHITE)
    for value in range(1, 9):
        files[f"orientation-{value}"] = _set_orientation(write_dng(root / f"orient{value}.dng", _scene(0)), value)
    return files


def _isp(path: Path, out: Path, *extra: str) -> int:
    return main(["isp", str(path), "-o", str(out), "--tile", "16", *extra])


# ---------------------------------------------------------------- files LibRaw could not really read

@pytest.mark.parametrize("case", list(BAD_MOSAICS) + list(TRUNCATED))
def test_cli_refuses_undecodable_raw(raws, case, tmp_path, one_line_error):
    out = tmp_path / "out.png"
    words = BAD_MOSAICS[case][1] if case in BAD_MOSAICS else ("truncated",)
    line = one_line_error(_isp(raws[case], out), raws[case].name, *words)
    assert "copy" in line  # the fix: copy the file again
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", list(BAD_MOSAICS) + list(TRUNCATED))
def test_python_refuses_undecodable_raw(raws, case, tmp_path):
    from mobilevision.tasks.isp import process_raw_file

    out = tmp_path / "out.png"
    out.write_bytes(b"previous render")
    with pytest.raises(DataError, match=raws[case].name) as e:
        process_raw_file(raws[case], out, tile=16)
    assert "\n" not in str(e.value)
    assert out.read_bytes() == b"previous render" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("case", PLAUSIBLE)
def test_real_looking_raws_still_render(raws, case, tmp_path):
    out = tmp_path / "out.png"
    assert _isp(raws[case], out) == 0
    assert Image.open(out).size == (W, H)


def test_dark_clipped_case_really_is_mostly_zeros():
    """The black-0 dark photo exercises the rule: over half its pixels are exact zeros."""
    assert (PLAUSIBLE["dark-clipped-black-0"]() == 0).mean() > 0.5


@pytest.mark.parametrize("camera, white, expected", [
    ([15000, 15500, 15000, 15500], 16383, 15000.0),   # the camera's per-channel saturation, lowest channel
    (None, 16383, 16383.0),                            # no camera levels: LibRaw's white level
    ([0, 0, 0, 0], 4095, 4095.0),
], ids=["camera-levels", "no-camera-levels", "zero-camera-levels"])
def test_saturation_level_prefers_the_camera_levels(camera, white, expected):
    assert saturation_level(camera, white, [512.0] * 4) == expected


def test_saturation_level_ignores_camera_levels_below_black():
    assert saturation_level([400, 400, 400, 400], 16383, [512.0] * 4) == 16383.0


# ---------------------------------------------------------------- orientation

@pytest.mark.parametrize("orientation", range(1, 9), ids=lambda o: f"tiff-orientation-{o}")
def test_orientation_matches_libraw(raws, orientation):
    """Our flip of the mosaic (as a grey picture) equals LibRaw's own rendering's geometry."""
    import rawpy

    path = raws[f"orientation-{orientation}"]
    raw = read_raw(path)
    with rawpy.imread(str(path)) as r:
        assert raw.flip == r.sizes.flip
        ref = r.postprocess(half_size=True, gamma=(1, 1), no_auto_bright=True, user_wb=[1, 1, 1, 1],
                            output_bps=16).mean(axis=2)
    ours = apply_flip(raw.mosaic[::2, ::2].astype(np.float64), raw.flip)
    assert ours.shape == ref.shape
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("orientation, size", [(1, (W, H)), (3, (W, H)), (6, (H, W)), (8, (H, W))],
                         ids=["landscape", "upside-down", "portrait-cw", "portrait-ccw"])
def test_cli_writes_the_photo_upright(raws, orientation, size, tmp_path):
    out = tmp_path / "out.png"
    assert _isp(raws[f"orientation-{orientation}"], out) == 0
    assert Image.open(out).size == size


def test_apply_flip_is_libraw_flip_index():
    """flip 6 is 90 deg clockwise: the top-left corner goes to the top-right."""
    a = np.arange(6).reshape(2, 3)
    assert apply_flip(a, 0).tolist() == a.tolist()
    assert apply_flip(a, 3).tolist() == [[5, 4, 3], [2, 1, 0]]
    assert apply_flip(a, 6).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert apply_flip(a, 5).tolist() == [[2, 5], [1, 4], [0, 3]]
    with pytest.raises(ValueError, match="flip"):
        apply_flip(a, 9)


# ---------------------------------------------------------------- arguments, checked before the model is built

def _bad_args(raws: dict[str, Path], tmp: Path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """id: (argv after `isp`, words of the error)."""
    good = str(raws["good"])
    (tmp / "a-file.txt").write_text("x")
    (tmp / "dir.png").mkdir(exist_ok=True)
    (tmp / "zero-bytes.dng").write_bytes(b"")
    (tmp / "a-dir.dng").mkdir(exist_ok=True)
    if not (tmp / "pipe.dng").exists():
        os.mkfifo(tmp / "pipe.dng")
    out = str(tmp / "out.png")
    return {
        "missing-input": ([str(tmp / "missing.dng"), "-o", out], ("missing.dng", "not found")),
        "input-is-a-folder": ([str(tmp / "a-dir.dng"), "-o", out], ("a-dir.dng", "is a folder")),
        "input-is-a-fifo": ([str(tmp / "pipe.dng"), "-o", out], ("pipe.dng", "not a regular file")),
        "empty-input": ([str(tmp / "zero-bytes.dng"), "-o", out], ("zero-bytes.dng", "empty")),
        "output-gif": ([good, "-o", str(tmp / "out.gif")], ("out.gif", ".png")),
        "output-no-suffix": ([good, "-o", str(tmp / "out")], ("out", ".png")),
        "output-is-a-folder": ([good, "-o", str(tmp / "dir.png")], ("dir.png", "is a folder")),
        "output-folder-is-a-file": ([good, "-o", str(tmp / "a-file.txt" / "out.png")], ("a-file.txt", "not a folder")),
        "tile-negative": ([good, "-o", out, "--tile", "-4"], ("--tile",)),
        "tile-odd": ([good, "-o", out, "--tile", "17"], ("--tile",)),
        "tile-too-small": ([good, "-o", out, "--tile", "8"], ("--tile", "16")),
        "unknown-model": ([good, "-o", out, "--model", "nope"], ("nope", "efficientisp")),
        "classifier-model": ([good, "-o", out, "--model", "emo_1m"], ("emo_1m", "ISP model")),
        "missing-weights": ([good, "-o", out, "--weights", str(tmp / "w.pth")], ("w.pth", "not found")),
        "device-npu": ([good, "-o", out, "--device", "npu"], ("npu", "bench")),
        "device-unknown": ([good, "-o", out, "--device", "tpu"], ("tpu", "cpu", "gpu:N")),
    }


BAD_ARGS = ["missing-input", "input-is-a-folder", "input-is-a-fifo", "empty-input", "output-gif", "output-no-suffix",
            "output-is-a-folder", "output-folder-is-a-file", "tile-negative", "tile-odd", "tile-too-small",
            "unknown-model", "classifier-model", "missing-weights", "device-npu", "device-unknown"]


@pytest.mark.parametrize("case", BAD_ARGS)
def test_cli_refuses_bad_arguments(raws, case, tmp_path, one_line_error):
    argv, words = _bad_args(raws, tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(main(["isp", *argv]), *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing half-written


@pytest.mark.slow
def test_bad_arguments_fail_fast_without_torch(raws, tmp_path):
    """Every argument error comes before torch is imported (the deterministic check), in well under the
    seconds torch + a model take (measured in a fresh interpreter; ~0.3 s for the first call, ms after)."""
    cases = _bad_args(raws, tmp_path)
    script = ("import json, sys, time\nfrom mobilevision.cli import main\nres = {}\n"
              "for name, argv in json.loads(sys.argv[1]).items():\n"
              "    t = time.perf_counter(); rc = main(['isp', *argv])\n"
              "    res[name] = [rc, time.perf_counter() - t, 'torch' in sys.modules]\n"
              "print(json.dumps(res))\n")
    argv = {k: v[0] for k, v in cases.items()}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(argv)], capture_output=True, text=True,
                          timeout=120, check=True)
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert {k: (rc, torch) for k, (rc, _, torch) in results.items()} == {k: (2, False) for k in argv}
    slow = {k: round(s, 2) for k, (_, s, _) in results.items() if s > 2.0}
    assert not slow, slow


def test_validation_errors_are_mobilevision_errors(raws, tmp_path):
    from mobilevision.data.raw import check_isp_request

    with pytest.raises(MobileVisionError, match="--tile"):
        check_isp_request(raws["good"], tmp_path / "o.png", "efficientisp", tile=10)
    assert check_isp_request(raws["good"], tmp_path / "new" / "o.JPG", "robustisp", tile=0) == "JPEG"


def test_isp_model_names_match_the_registry():
    """The torch-free name check knows exactly the zoo's ISP models."""
    import mobilevision
    from mobilevision.data.raw import ISP_MODELS

    assert sorted(ISP_MODELS) == mobilevision.list_models("isp")
