"""ISP inference on camera RAW files (torch path; apps use ``mobilevision.runtime``'s ``process_raw``).

A RAW file is read with rawpy (:mod:`mobilevision.data.raw`), packed in (B, G_R, R, G_B) order,
normalised with the file's own black/white levels (spec §2.2, "real camera RAW"), and run in tiles of
``tile`` packed pixels, so memory stays bounded for a 12-megapixel photo. EfficientISP / RobustISP
tiles carry a 3-pixel halo: exact. RMFA-Net's channel attention pools over the whole input, so its
tiles (halo 16, or a quarter of a smaller tile) approximate a full-image pass (spec P15); ``tile=0`` runs the image in one piece.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import mobilevision
from mobilevision.data.raw import RawMosaic, read_raw
from mobilevision.errors import MobileVisionError
from mobilevision.runtime.tasks.isp import HALO, normalize_raw, pack_bayer, run_tiled, to_uint8

MODELS = ("efficientisp", "robustisp", "rmfa_net_tiny")
RMFA_HALO = 16


@dataclass
class IspResult:
    rgb: np.ndarray          # (H, W, 3) uint8
    pattern: str
    black_level: list[float]
    white_level: float
    tiles: int


def _is_local(model: torch.nn.Module) -> bool:
    from mobilevision.models.isp import ThreeConvISP

    return isinstance(getattr(model, "generator", None), ThreeConvISP)


@torch.no_grad()
def render_mosaic(model: torch.nn.Module, raw: RawMosaic, tile: int = 512, clip: bool = False,
                  device: str = "cpu") -> IspResult:
    """RGB of a mosaic through a RawToRGB model, in ``tile`` x ``tile`` packed tiles (0: one piece)."""
    if tile and (tile < 16 or tile % 2):
        raise MobileVisionError(f"--tile {tile}: use an even number of packed pixels >= 16, or 0 for no tiling")
    mosaic = raw.mosaic
    local = _is_local(model)
    if not local:  # RMFA-Net's pyramid needs full-resolution sides divisible by 4
        mosaic = mosaic[: mosaic.shape[0] // 4 * 4, : mosaic.shape[1] // 4 * 4]
    x = normalize_raw(pack_bayer(mosaic, raw.pattern), raw.black_level, raw.white_level, clip)
    model = model.eval().to(device)
    count = 0

    def run(t: np.ndarray) -> np.ndarray:
        nonlocal count
        count += 1
        return model(torch.from_numpy(np.ascontiguousarray(t[None])).to(device))[0].cpu().numpy()

    size = tile or max(x.shape[1:])
    rgb = run_tiled(x, run, size, halo=HALO if local else min(RMFA_HALO, size // 4))
    return IspResult(to_uint8(rgb), raw.pattern, raw.black_level, raw.white_level, count)


def process_raw_file(path: str | Path, out: str | Path, model: str = "efficientisp", weights: str | None = None,
                     tile: int = 512, clip: bool = False, device: str = "cpu") -> IspResult:
    """Read a camera RAW file, render it with ``model`` (+ local ``weights``), write an 8-bit PNG/JPEG atomically."""
    import io

    from PIL import Image

    from mobilevision.atomic_io import atomic_write_bytes

    out = Path(out)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(out.suffix.lower())
    if fmt is None:
        raise MobileVisionError(f"output {out}: use a .png, .jpg or .tif file name")
    net = mobilevision.create_model(model, weights=weights)
    if net.model_card.task != "isp":
        raise MobileVisionError(f"{model} is a {net.model_card.task!r} model: pick an ISP model ({', '.join(MODELS)})")
    result = render_mosaic(net, read_raw(path), tile=tile, clip=clip, device=device)
    buf = io.BytesIO()
    Image.fromarray(result.rgb).save(buf, format=fmt)
    atomic_write_bytes(out, buf.getvalue())
    return result
