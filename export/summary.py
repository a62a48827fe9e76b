"""An artifact's metadata as a short human summary (``mobilevision info``): one (field, value) row per fact a
user asks about — task, tensors, preprocessing, labels, precision, parity, quantisation, integrity, tools.

The metadata is untrusted input: it has passed ``ModelMetadata.validate`` (types and sizes of the schema's
own fields), but the free-form ``parity`` and ``quantization`` records may hold anything, so every value read
from them is formatted defensively and a surprising one is shown as text, never raised on.
"""
from __future__ import annotations

import math
from typing import Any

from .metadata import ModelMetadata, Preprocessing


def _num(value: Any, spec: str = ".3g") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "?" if value is None else str(value)[:40]
    return format(value, spec) if math.isfinite(value) else str(value)


def _shape(shape: Any) -> str:
    return "x".join("?" if d is None or (isinstance(d, int) and d < 0) else str(d) for d in shape)


def _tensors(specs: list) -> str:
    return "; ".join(f"{s.name} {s.dtype} {_shape(s.shape)}" + (f" {s.layout}" if s.layout else "") for s in specs)


def _preprocessing(pre: Preprocessing) -> str:
    if pre.resize_mode == "stretch":
        size = f"resize to {_shape(pre.crop)} ({pre.interpolation}, aspect not kept)"
    else:
        size = f"shorter side to {pre.resize} ({pre.interpolation}), centre crop {_shape(pre.crop)}"
    steps = [size, pre.color]
    if pre.normalization == "model":
        steps.append("uint8 pixels (the model normalises)")
    else:
        steps.append(f"x{_num(pre.scale, '.4g')}, mean {tuple(round(m, 4) for m in pre.mean)}, "
                     f"std {tuple(round(s, 4) for s in pre.std)}")
    return ", ".join(steps)


def _parity(parity: dict[str, Any] | None) -> str:
    if not parity:
        return "not recorded"
    runtime = parity.get("runtime", "?")
    if not parity.get("numeric", True):
        return f"structure only ({runtime}): {parity.get('note') or 'numbers need the runtime'}"
    verdict = "passed" if parity.get("passed") else "FAILED"
    outputs = [o for o in parity.get("outputs") or [] if isinstance(o, dict)]
    worst_abs = max((o.get("max_abs") for o in outputs if isinstance(o.get("max_abs"), (int, float))), default=None)
    worst_cos = min((o.get("cosine") for o in outputs if isinstance(o.get("cosine"), (int, float))), default=None)
    parts = [f"{verdict} in {runtime}", f"{_num(parity.get('samples'))} samples"]
    if worst_abs is not None:
        parts.append(f"max abs {_num(worst_abs, '.2g')}")
    if worst_cos is not None:
        parts.append(f"cosine {_num(worst_cos, '.6f')}")
    if isinstance(parity.get("top1_agreement"), (int, float)):
        parts.append(f"top-1 agreement {_num(100 * parity['top1_agreement'], '.0f')}%")
    if parity.get("computed_precision"):
        parts.append(f"computed in {parity['computed_precision']}")
    return ", ".join(parts)


def _quantization(q: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("quantisation", f"{q.get('tool', '?')}: {q.get('scheme', '?')}")]
    acc = q.get("accuracy")
    if isinstance(acc, dict):
        rows.append(("accuracy", f"{acc.get('metric', '?')} {_num(acc.get('before'))} (PyTorch fp32) -> "
                                 f"{_num(acc.get('after'))} ({acc.get('precision', '?')}) on {_num(acc.get('samples'))} "
                                 f"{acc.get('data', '')} inputs".rstrip()))
    speed = q.get("speed")
    if isinstance(speed, dict):
        rows.append(("int8 speed", f"{_num(speed.get('int8_ms'))} ms vs fp32 {_num(speed.get('fp32_ms'))} ms in "
                                   f"{speed.get('runtime', '?')} (x{_num(speed.get('ratio'), '.2f')})"))
    return rows


def random_weights(md: ModelMetadata) -> bool:
    """Whether the artifact is a zoo model exported without weights (random initialisation): no weights file is
    recorded and the model name is a zoo model's (a user's own module records no weights file either)."""
    from mobilevision.zoo_table import declared

    return md.weights is None and any(row["name"] == md.model for row in declared())


def summary_rows(md: ModelMetadata, integrity: dict[str, Any] | None = None, size_bytes: int | None = None
                 ) -> list[tuple[str, str]]:
    """(field, value) rows, in the order a user reads them; values are plain text (escape before printing)."""
    computed = (md.parity or {}).get("computed_precision")
    rows = [("model", md.model), ("task", md.task),
            ("format", f"{md.target}, {md.precision}" + (f" (computed in {computed})" if computed else ""))]
    if size_bytes is not None:
        rows.append(("size", f"{size_bytes / 1e6:.2f} MB"))
    if md.weights:
        rows.append(("weights", md.weights))
    elif random_weights(md):
        rows.append(("weights", "random initialisation: outputs carry no meaning (export with --weights for a "
                                "trained model)"))
    else:
        rows.append(("weights", "not recorded (exported from a module or a .pt2 program)"))
    rows += [("inputs", _tensors(md.inputs)), ("outputs", _tensors(md.outputs))]
    if md.preprocessing is not None:
        rows.append(("preprocessing", _preprocessing(md.preprocessing)))
    if md.raw is not None:
        rows.append(("RAW input", f"packing {'/'.join(md.raw.packing)}, black {tuple(md.raw.black_level)}, "
                                  f"white {_num(md.raw.white_level, 'g')}" + (", clipped at 0" if md.raw.clip else "")))
    if md.labels is not None or md.num_classes:
        names = f"{len(md.labels)} names" if md.labels else "no names (class indices)"
        rows.append(("classes", f"{md.num_classes or len(md.labels or [])}, {names}"
                                + (f" ({md.label_set})" if md.label_set else "")))
    if md.landmarks is not None:
        rows.append(("landmarks", f"{md.landmarks.points} points in {md.landmarks.coordinates}"))
    if md.params is not None or md.macs is not None:
        rows.append(("size of model", f"{_num((md.params or 0) / 1e6, '.3f')} M params, "
                                      f"{_num((md.macs or 0) / 1e6, '.1f')} M MACs"))
    rows.append(("parity", _parity(md.parity)))
    if md.quantization:
        rows += _quantization(md.quantization)
    if integrity is not None:
        if "sha256" in integrity:
            rows.append(("integrity", f"SHA-256 of {len(integrity['sha256'])} file(s) matches the sidecar"))
        else:
            rows.append(("integrity", f"not verified: {integrity.get('not_verified', '?')}"))
    rows.append(("tools", ", ".join(f"{k} {v}" for k, v in md.tools.items()) or "not recorded"))
    rows.append(("created", md.created or "?"))
    return rows
