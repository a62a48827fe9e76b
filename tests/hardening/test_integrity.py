"""Every artifact file is hashed into its sidecar and checked on load; an export killed between two
renames leaves nothing that loads; stale scratch folders of killed exports are cleaned up."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mobilevision.errors import ArtifactError

TARGETS = {"onnx": "ort", "openvino": "openvino", "tflite": "litert"}


def _copy_artifact(result, dest: Path) -> Path:
    """The artifact's files and sidecar copied into ``dest``; returns the entry file there."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in [*result.files, result.sidecar]:
        shutil.copy2(f, dest / f.name)
    return dest / result.path.name


def _flip_byte(path: Path, offset_fraction: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * offset_fraction)
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_sidecar_records_every_file(toy_exports):
    from mobilevision.export.integrity import sha256_file

    for target, result in toy_exports.items():
        recorded = json.loads(result.sidecar.read_text())["files"]
        names = {f.name for f in result.files} if target != "coreml" else None
        if names is not None:
            assert set(recorded) == names, (target, recorded)
            for f in result.files:
                assert recorded[f.name] == sha256_file(f)
        else:
            assert recorded and all(n.startswith(result.path.name + "/") for n in recorded)


@pytest.mark.parametrize("case", ["flip-entry", "append-companion", "truncate-entry", "missing-companion",
                                  "sidecar-names-outside"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_tampered_artifact_is_refused(toy_exports, tmp_path, target, case):
    from mobilevision.runtime import load

    entry = _copy_artifact(toy_exports[target], tmp_path)
    companion = entry.with_suffix(".bin") if target == "openvino" else entry
    if case == "flip-entry":
        _flip_byte(entry)
    elif case == "append-companion":
        with open(companion, "ab") as f:
            f.write(b"\0" * 16)
    elif case == "truncate-entry":
        entry.write_bytes(entry.read_bytes()[:-7])
    elif case == "missing-companion":
        if target != "openvino":
            pytest.skip("one-file artifact")
        companion.unlink()
    else:
        side = entry.with_name(entry.name + ".json")
        d = json.loads(side.read_text())
        d["files"]["../../etc/passwd"] = "0" * 64
        side.write_text(json.dumps(d))
    with pytest.raises(ArtifactError) as e:
        load(entry, backend=TARGETS[target])
    message = str(e.value)
    assert "\n" not in message and ("re-export" in message), message


@pytest.mark.parametrize("target", list(TARGETS))
def test_intact_artifact_loads_and_reports_hashes(toy_exports, target):
    from mobilevision.runtime import load

    with load(toy_exports[target].path, backend=TARGETS[target]) as model:
        assert toy_exports[target].path.name in model.integrity.verified
        assert "sha256" in model.integrity.describe()


def test_without_sidecar_loads_unverified(toy_exports, tmp_path):
    from mobilevision.runtime import load

    entry = _copy_artifact(toy_exports["onnx"], tmp_path)
    entry.with_name(entry.name + ".json").unlink()
    with load(entry) as model:
        assert not model.integrity.verified and "no sidecar" in model.integrity.note


def test_info_shows_hashes(toy_exports, capsys):
    from mobilevision.cli import main

    assert main(["info", str(toy_exports["openvino"].path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "sha256" in out and toy_exports["openvino"].path.with_suffix(".bin").name in out
    assert main(["info", str(toy_exports["openvino"].path)]) == 0   # the summary says it in words
    assert "SHA-256 of 2 file(s) matches the sidecar" in capsys.readouterr().out


def test_cli_refuses_tampered_artifact_in_one_line(toy_exports, tmp_path, one_line_error):
    from mobilevision.cli import main

    entry = _copy_artifact(toy_exports["onnx"], tmp_path)
    _flip_byte(entry, 0.9)
    one_line_error(main(["info", str(entry)]), entry.name, "SHA-256")


KILLED_EXPORT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from conftest import _register_toy, TOY
    from mobilevision.export import api, stages
    _register_toy()
    renames = []
    def kill_after(path, n={n}):
        renames.append(path)
        if len(renames) == n:
            os.kill(os.getpid(), signal.SIGKILL)
    stages.after_rename = kill_after
    api.export(TOY, {target!r}, imgsz={imgsz}, out_dir={out!r}, name="m")
""")


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("target,kill_after", [("openvino", 1), ("openvino", 2), ("onnx", 1)])
def test_export_killed_between_renames_leaves_nothing_that_loads(tmp_path, toy_name, target, kill_after):
    from mobilevision.export import api, stages
    from mobilevision.runtime import load

    out = tmp_path / "exports"
    old = api.export(toy_name, target, imgsz=64, out_dir=out, name="m")
    with load(old.path) as m:
        x = np.zeros(m.inputs[0].shape, np.float32)
        before = m.predict(x)[m.output_names[0]]
    script = KILLED_EXPORT.format(tests=str(Path(__file__).parents[1]), n=kill_after, target=target,
                                  imgsz=96, out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    scratch = [d for d in out.iterdir() if d.is_dir()]
    assert scratch, "the killed export left no scratch folder: the fault was not injected mid-export"
    with pytest.raises(ArtifactError, match="re-export"):
        load(old.path)
    # the next export into the folder cleans the dead export's scratch folder and writes a whole artifact
    again = api.export(toy_name, target, imgsz=64, out_dir=out, name="m")
    assert not [d for d in out.iterdir() if d.is_dir()]
    with load(again.path) as m:
        np.testing.assert_allclose(m.predict(x)[m.output_names[0]], before, rtol=1e-5, atol=1e-6)


def test_running_exports_scratch_is_kept(tmp_path):
    from mobilevision.atomic_io import make_scratch_dir, remove_stale_scratch

    mine = make_scratch_dir(tmp_path, ".m.onnx.")
    dead = make_scratch_dir(tmp_path, ".m.onnx.")
    (dead / ".owner-pid").write_text("999999999")
    unmarked = tmp_path / ".user_folder"
    unmarked.mkdir()
    assert remove_stale_scratch(tmp_path) == [dead]
    assert mine.is_dir() and unmarked.is_dir() and not dead.exists()
    os.rmdir(unmarked)
