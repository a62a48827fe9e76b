"""Hostile files, full disks, bad output paths, a torch-free install and untrusted text: one line, exit 2."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

from mobilevision.cli import main

TOY = "toy_test_classifier"


class SomeClass:
    """A Python object that a weights-only load must refuse."""

    def __init__(self):
        self.value = 1


class RunsACommand:
    """Unpickling this would call os.system: the classic malicious checkpoint."""

    def __reduce__(self):
        return (os.system, ("true",))


def _toy_state(toy_name) -> dict[str, torch.Tensor]:
    import mobilevision

    return mobilevision.create_model(toy_name).state_dict()


def _save_safetensors(sd, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def _int32(sd, path):
    _save_safetensors({k: (v * 100).to(torch.int32) for k, v in sd.items()}, path)


def _nan(sd, path):
    sd["conv.weight"][0, 0, 0, 0] = float("nan")
    _save_safetensors(sd, path)


def _inf(sd, path):
    sd["head.bias"][1] = float("inf")
    torch.save(sd, path)


def _int_keys(sd, path):
    torch.save({**sd, 0: torch.zeros(1), 1: torch.zeros(1)}, path)


def _object(sd, path):
    torch.save({"x": SomeClass()}, path)


def _code(sd, path):
    torch.save({"state_dict": sd, "hook": RunsACommand()}, path)


BAD_CHECKPOINTS = {
    "int32-safetensors": (_int32, "w.safetensors", ["conv.weight", "int32", "float"]),
    "nan-weights": (_nan, "w.safetensors", ["conv.weight", "NaN"]),
    "inf-weights": (_inf, "w.pth", ["head.bias", "Inf"]),
    "non-string-keys": (_int_keys, "w.pth", ["not strings", "0"]),
    "pickled-object": (_object, "w.pth", ["Python objects beyond tensors", "SomeClass", "refused for safety",
                                          "state_dict"]),
    "pickled-code": (_code, "w.pth", ["Python objects beyond tensors", "system", "refused for safety",
                                      "state_dict"]),
}


@pytest.mark.parametrize("write,name,words", BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys())
def test_bad_checkpoint_is_refused_at_load(write, name, words, toy_name, tmp_path, capsys, one_line_error):
    path = tmp_path / name
    write(_toy_state(toy_name), path)
    out = tmp_path / "out"
    one_line_error(main(["export", toy_name, "-t", "onnx", "--weights", str(path), "--out", str(out)]),
                   str(path), *words)
    assert not list(out.glob("*.onnx"))


def test_float16_weights_still_load(toy_name, tmp_path):
    import mobilevision

    sd = _toy_state(toy_name)
    path = tmp_path / "half.safetensors"
    _save_safetensors({k: v.half() for k, v in sd.items()}, path)
    model = mobilevision.create_model(toy_name, weights=str(path))
    assert model.conv.weight.dtype == torch.float32
    torch.testing.assert_close(model.conv.weight, sd["conv.weight"].half().float())


# ------------------------------------------------------------------ full disk, unusable output paths

def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _fake_rows(*args, **kwargs):
    from mobilevision.runtime.profile import BenchResult

    return [BenchResult(artifact="m.onnx", backend="ort", model="m", threads=None, device="cpu", load_ms=1.0,
                        first_ms=1.0, runs=1, warmup=0, median_ms=1.0, mean_ms=1.0, p90_ms=1.0, min_ms=1.0,
                        max_ms=1.0, std_ms=0.0, peak_rss_mb=10.0, macs=None, gmacs_per_s=None)]


@pytest.fixture
def tiny_data(tmp_path, image_folder):
    return image_folder(tmp_path / "data", classes=("ant", "bee"), per_class=4, size=(16, 16))


def _train_argv(toy_name, data, out):
    return ["train", "classify", "--model", toy_name, "--data", str(data), "--epochs", "1", "--batch-size", "4",
            "--imgsz", "16", "--out", str(out)]


def test_disk_full_while_training(toy_name, tiny_data, tmp_path, monkeypatch, capsys, one_line_error):
    monkeypatch.setattr(os, "fsync", _no_space)  # every atomic write fails as on a full disk
    run = tmp_path / "run"
    one_line_error(main(_train_argv(toy_name, tiny_data, run)), str(run), "free space")


def test_disk_full_writing_bench_json(tmp_path, monkeypatch, capsys, one_line_error):
    monkeypatch.setattr("mobilevision.runtime.profile.benchmark", _fake_rows)
    monkeypatch.setattr(os, "fsync", _no_space)
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"x")
    report = tmp_path / "bench.json"
    one_line_error(main(["bench", str(artifact), "--json", str(report)]), str(report), "free space")
    assert not report.exists()


def _file(tmp_path):
    f = tmp_path / "somefile"
    f.write_text("not a folder")
    return f


# Tests run as root, where chmod 0o500 does not stop writes: an output path under a regular file is the
# portable way to make a folder that cannot be created.
BAD_OUTPUTS = {
    "export-out-is-a-file": ("export", lambda t: _file(t)),
    "export-out-under-a-file": ("export", lambda t: _file(t) / "sub"),
    "train-out-is-a-file": ("train", lambda t: _file(t)),
    "train-out-under-a-file": ("train", lambda t: _file(t) / "sub"),
    "bench-json-under-a-file": ("bench", lambda t: _file(t) / "b.json"),
    "bench-json-is-a-folder": ("bench", lambda t: t),
}


@pytest.mark.parametrize("command,make", BAD_OUTPUTS.values(), ids=BAD_OUTPUTS.keys())
def test_unusable_output_path(command, make, toy_name, tiny_data, tmp_path, monkeypatch, capsys, one_line_error):
    base = tmp_path / "o"
    base.mkdir()
    out = make(base)
    if command == "export":
        argv = ["export", toy_name, "-t", "onnx", "--out", str(out)]
    elif command == "train":
        argv = _train_argv(toy_name, tiny_data, out)
    else:
        monkeypatch.setattr("mobilevision.runtime.profile.benchmark", _fake_rows)
        artifact = tmp_path / "m.onnx"
        artifact.write_bytes(b"x")
        argv = ["bench", str(artifact), "--json", str(out)]
    one_line_error(main(argv), str(out))


# ------------------------------------------------------------------ a runtime-only install (no torch)

NO_TORCH_COMMANDS = {
    "export": (["export", TOY, "-t", "onnx"], "mobilevision[export]"),
    "list-imgsz": (["list", "--imgsz", "320"], "mobilevision[export]"),
    "train": (["train", "classify", "--model", TOY], "mobilevision[train]"),
    "eval": (["eval", "classify", "--weights", "w.safetensors"], "mobilevision[train]"),
}


@pytest.fixture(scope="module")
def without_torch(tmp_path_factory):
    """{command id: (exit code, stderr)} from one interpreter where ``import torch`` fails."""
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        sys.modules["torch"] = None  # as in a runtime-only install
        from mobilevision.cli import main
        results = {{}}
        for key, argv in {json.dumps({k: v[0] for k, v in NO_TORCH_COMMANDS.items()})}.items():
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    rc = main(argv)
                except BaseException as e:
                    rc = repr(e)
            results[key] = [rc, err.getvalue()]
        print(json.dumps(results))
    """)
    cwd = tmp_path_factory.mktemp("no_torch")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("key", NO_TORCH_COMMANDS, ids=NO_TORCH_COMMANDS.keys())
def test_command_needing_torch_says_what_to_install(without_torch, key):
    rc, err = without_torch[key]
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (rc, err)
    assert "pip install" in lines[0] and NO_TORCH_COMMANDS[key][1] in lines[0], lines[0]


# ------------------------------------------------------------------ untrusted text is printed inert

HOSTILE = ["[red]boom[/red]", "\x1b[2Jwipe", "[link=https://evil.example]click[/link]", "\x9b31mcsi", "rtl\u202etxt"]


def _inert(text: str) -> None:
    """No raw control or bidi characters reach the terminal."""
    assert not any(c in text for c in ("\x1b", "\x9b", "\u202e")), repr(text)


class _FakeModel:
    def __init__(self, labels=HOSTILE, metadata=None):
        from mobilevision.export.integrity import Integrity

        self.labels, self.metadata = labels, metadata
        self.integrity = Integrity({"m.onnx": "0" * 64})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def classify(self, image, top_k=5):
        return [SimpleNamespace(score=0.5, index=i, label=label) for i, label in enumerate(self.labels[:top_k])]


def test_classify_prints_labels_inert(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mobilevision.runtime.load", lambda *a, **k: _FakeModel())
    assert main(["classify", "m.onnx", "img.png"]) == 0
    out = capsys.readouterr().out
    _inert(out)
    assert "[red]boom[/red]" in out and "[link=https://evil.example]click[/link]" in out
    assert "\\x1b[2Jwipe" in out  # shown, escaped


def test_info_prints_metadata_inert_and_valid_json(monkeypatch, capsys):
    md = SimpleNamespace(to_json=lambda: json.dumps({"labels": HOSTILE, "model": "[bold]m[/bold]"}))
    monkeypatch.setattr("mobilevision.runtime.load", lambda *a, **k: _FakeModel(metadata=md))
    assert main(["info", "m.onnx", "--json"]) == 0
    out = capsys.readouterr().out
    _inert(out)
    assert json.loads(out) == {"labels": HOSTILE, "model": "[bold]m[/bold]", "integrity": {"sha256": {"m.onnx": "0" * 64}}}


def test_bench_rows_print_names_and_errors_inert(tmp_path, monkeypatch, capsys):
    def rows(*args, **kwargs):
        good, bad = _fake_rows()[0], _fake_rows()[0]
        good.artifact = str(tmp_path / "[bold red]x\x1b[2J.onnx")
        bad.artifact, bad.error = str(tmp_path / "y.onnx"), "[blink]failed[/blink]\x1b]8;;e\x07"
        return [good, bad]

    monkeypatch.setattr("mobilevision.runtime.profile.benchmark", rows)
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"x")
    main(["bench", str(artifact)])
    captured = capsys.readouterr()
    _inert(captured.out + captured.err)
    assert "[bold red]x" in captured.out and "[blink]failed" in captured.out


def test_export_failure_text_is_inert(toy_name, monkeypatch, capsys):
    from mobilevision.export.api import ExportFailure

    monkeypatch.setattr("mobilevision.export.api.export_all", lambda *a, **k: [
        ExportFailure(model=toy_name, target="onnx", precision="fp32", error="[red]bad[/red] \x1b[2J")])
    rc = main(["export", toy_name, "-t", "onnx"])
    captured = capsys.readouterr()
    assert rc == 2
    _inert(captured.out + captured.err)
    assert "[red]bad[/red]" in captured.out


def test_error_line_strips_control_characters(toy_name, tmp_path, capsys, one_line_error):
    weights = tmp_path / "w\x1b[2J\x9bx.pth"
    line = one_line_error(main(["export", toy_name, "-t", "onnx", "--weights", str(weights)]), "not found")
    _inert(line)


# ------------------------------------------------------------------ usage errors and unexpected OS errors

USAGE = {
    "unknown-option": (["bench", "m.onnx", "--nope"], ["--nope", "mobilevision bench --help"]),
    "not-a-number": (["bench", "m.onnx", "--runs", "abc"], ["--runs", "abc"]),
    "missing-argument": (["classify", "m.onnx"], ["missing argument 'images'"]),
    "unknown-command": (["frobnicate"], ["frobnicate"]),
}


@pytest.mark.parametrize("argv,words", USAGE.values(), ids=USAGE.keys())
def test_usage_error_is_one_line(argv, words, capsys, one_line_error):
    one_line_error(main(argv), *words)


def test_unexpected_os_error_is_one_line(monkeypatch, capsys, one_line_error):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/some/where")

    monkeypatch.setattr("mobilevision.runtime.load", denied)
    one_line_error(main(["classify", "m.onnx", "img.png"]), "/some/where", "--debug")
