#!/usr/bin/env bash
# Exports one zoo model per task for the demo app into app/src/main/assets/models/ (plus
# models/index.json) and writes the ISP sample mosaic to app/src/main/assets/samples/.
# A .pte (ExecuTorch) already in models/ with its .pte.json sidecar is added to index.json as well.
#
# Usage (any cwd):  bash android_demo/export_models.sh
# Environment:
#   MOBILEVISION        the CLI to use (default: the repo's .venv/bin/mobilevision, else `mobilevision` on PATH)
#   EMO_WEIGHTS         local checkpoint for emo_1m          (classify)
#   EFFICIENTAD_WEIGHTS local checkpoint for efficientad_s   (anomaly)
#   ISP_WEIGHTS         local checkpoint for efficientisp    (isp)
#   LANDMARKS_WEIGHTS   local checkpoint for landmarks_mnv2  (landmarks)
# Without weights a model is exported from random init: its outputs are meaningless and the app
# only demonstrates the pipeline (preprocessing, accelerators, drawing, benchmark).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
ASSETS="$HERE/app/src/main/assets"
MODELS="$ASSETS/models"
SAMPLES="$ASSETS/samples"

die() { echo "export_models: $*" >&2; exit 1; }

# --- the CLI and the Python next to it (for the sample mosaic; needs numpy) ---
if [[ -n "${MOBILEVISION:-}" ]]; then
  cli="$(command -v "$MOBILEVISION" || true)"
  [[ -n "$cli" ]] || die "MOBILEVISION=$MOBILEVISION is not an executable; point it at the mobilevision CLI"
elif [[ -x "$REPO/.venv/bin/mobilevision" ]]; then
  cli="$REPO/.venv/bin/mobilevision"
elif command -v mobilevision >/dev/null 2>&1; then
  cli="$(command -v mobilevision)"
else
  die "mobilevision CLI not found; run 'pip install -e .' in $REPO (or set MOBILEVISION=/path/to/mobilevision)"
fi
py="$(dirname "$cli")/python"
[[ -x "$py" ]] || py="$(command -v python3 || true)"
[[ -n "$py" ]] || die "no python next to $cli and no python3 on PATH; install Python 3 with numpy"

# task model weights-variable, in the order the app lists them
TASKS=(
  "classify emo_1m EMO_WEIGHTS"
  "anomaly efficientad_s EFFICIENTAD_WEIGHTS"
  "landmarks landmarks_mnv2 LANDMARKS_WEIGHTS"
  "isp efficientisp ISP_WEIGHTS"
)

for row in "${TASKS[@]}"; do      # check every weights file before spending minutes exporting
  read -r _ _ wvar <<<"$row"
  w="${!wvar:-}"
  [[ -z "$w" || -f "$w" ]] || die "$wvar=$w is not a file; give the path of a local checkpoint or unset $wvar"
done

mkdir -p "$MODELS" "$SAMPLES"
t_all=$SECONDS
entries=()
for row in "${TASKS[@]}"; do
  read -r task model wvar <<<"$row"
  weights="${!wvar:-}"
  args=(export "$model" --target tflite --out "$MODELS")
  if [[ -n "$weights" ]]; then
    args+=(--weights "$weights")
    echo "export_models: $task: $model with weights $weights"
  else
    echo "export_models: $task: $model from random init (set $wvar=PATH for trained weights; outputs are meaningless without)"
  fi
  t0=$SECONDS
  "$cli" "${args[@]}" || die "exporting $model failed (see the CLI's message above)"
  # fp32 at the model's own size: the exporter names the artifact <model>.tflite (+ .tflite.json sidecar)
  file="$model.tflite"
  [[ -f "$MODELS/$file" && -f "$MODELS/$file.json" ]] \
    || die "the exporter did not write $MODELS/$file and its .json sidecar; check 'mobilevision export --help' for a changed naming"
  echo "export_models: $task: $file ($(du -h "$MODELS/$file" | cut -f1), $((SECONDS - t0))s)"
  entries+=("$task" "$model" "$file")
done

# --- index.json (atomic) and the ISP sample mosaic, with the black/white levels the ISP model expects ---
"$py" - "$MODELS" "$SAMPLES" "${entries[@]}" <<'EOF' || die "writing index.json / the sample mosaic failed (needs numpy: pip install numpy)"
import json, os, sys
import numpy as np

models, samples, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
index = [{"task": t, "model": m, "file": f} for t, m, f in zip(rest[0::3], rest[1::3], rest[2::3])]
# ExecuTorch programs put in models/ by hand (<model>.pte + its .pte.json sidecar) are listed too
for name in sorted(os.listdir(models)):
    sidecar = os.path.join(models, name + ".json")
    if name.endswith(".pte") and os.path.isfile(sidecar):
        md = json.load(open(sidecar))
        if md.get("task") in {e["task"] for e in index}:
            index.append({"task": md["task"], "model": md["model"], "file": name})
tmp = os.path.join(models, ".index.json.tmp")
with open(tmp, "w") as fh:
    json.dump(index, fh, indent=2)
    fh.write("\n")
os.replace(tmp, os.path.join(models, "index.json"))

isp = next(e for e in index if e["task"] == "isp")
raw = json.load(open(os.path.join(models, isp["file"] + ".json")))["raw"]
black = [float(b) for b in raw["black_level"]]          # 1 value, or 4 in packed order (B, G_R, R, G_B)
white = float(raw["white_level"])
if len(black) == 1:
    black *= 4

# A deterministic synthetic scene in linear RGB [0, 1]: a colour-checker-like grid of patches over
# a horizontal grey ramp, a bright disc, and mild seeded sensor noise; mosaicked RGGB.
W, H = 640, 480
y, x = np.mgrid[0:H, 0:W].astype(np.float64)
rgb = np.repeat((0.05 + 0.6 * x / (W - 1))[..., None], 3, axis=2)
palette = np.array([[0.45, 0.30, 0.22], [0.75, 0.55, 0.45], [0.30, 0.40, 0.60], [0.30, 0.45, 0.20],
                    [0.50, 0.50, 0.75], [0.40, 0.75, 0.65], [0.85, 0.45, 0.10], [0.25, 0.30, 0.65],
                    [0.75, 0.30, 0.35], [0.35, 0.20, 0.40], [0.60, 0.75, 0.20], [0.90, 0.65, 0.10],
                    [0.10, 0.20, 0.55], [0.25, 0.55, 0.25], [0.65, 0.15, 0.15], [0.95, 0.85, 0.10],
                    [0.70, 0.30, 0.60], [0.05, 0.50, 0.65], [0.95, 0.95, 0.95], [0.70, 0.70, 0.70],
                    [0.50, 0.50, 0.50], [0.30, 0.30, 0.30], [0.15, 0.15, 0.15], [0.04, 0.04, 0.04]])
for i, c in enumerate(palette):
    r, k = divmod(i, 6)
    x0, y0 = 40 + k * 95, 40 + r * 70
    rgb[y0:y0 + 60, x0:x0 + 85] = c
rgb[(x - 520) ** 2 + (y - 400) ** 2 < 50 ** 2] = [1.0, 0.97, 0.9]
rgb = np.clip(rgb + np.random.default_rng(0).normal(0.0, 0.004, rgb.shape), 0.0, 1.0)

# RGGB: R at (0, 0), G_R at (0, 1), G_B at (1, 0), B at (1, 1); black per packed channel
mosaic = np.empty((H, W))
sites = {"R": (0, 0, 0, black[2]), "G_R": (0, 1, 1, black[1]), "G_B": (1, 0, 1, black[3]), "B": (1, 1, 2, black[0])}
for dy, dx, ch, b in sites.values():
    mosaic[dy::2, dx::2] = b + (white - b) * rgb[dy::2, dx::2, ch]
mosaic = np.clip(np.rint(mosaic), 0, white).astype("<u2")

for name, data in (("bayer_rggb.bin", mosaic.tobytes()),
                   ("bayer_rggb.json", (json.dumps({
                       "width": W, "height": H, "pattern": "RGGB", "dtype": "uint16le",
                       "black_level": raw["black_level"], "white_level": white,
                       "description": "synthetic test scene (colour patches over a grey ramp), not a camera capture",
                   }, indent=2) + "\n").encode())):
    tmp = os.path.join(samples, "." + name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, os.path.join(samples, name))
print(f"export_models: samples/bayer_rggb.bin {W}x{H} RGGB, black {raw['black_level']}, white {white:g}, "
      f"values {int(mosaic.min())}..{int(mosaic.max())}")
EOF

echo "export_models: done in $((SECONDS - t_all))s:"
(cd "$ASSETS" && du -h models/* samples/* | sed 's/^/  /')
