"""The user's own model: a .pt2 (torch.export.save) or a module, with the flags its task needs, through every
target; hostile .pt2 files, untraceable modules and missing flags are one clear line each."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from mobilevision.cli import main
from mobilevision.errors import ExportError
from mobilevision.export import export
from mobilevision.export.api import export_all, resolve_targets
from mobilevision.runtime import load

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


class Net(torch.nn.Module):
    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class TwoInputs(torch.nn.Module):
    """An image and a feature vector: a model no zoo card describes."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 + 6, 3)

    def forward(self, image, features):
        return self.fc(torch.cat([self.conv(image).mean((2, 3)), features], dim=1))


class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        if y.sum() > 0:        # a Python branch on a tensor value: not traceable
            return y.mean((2, 3))
        return y.amax((2, 3))


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    torch.manual_seed(0)
    net = Net().eval()
    net.bn.running_mean.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp("own") / "my net.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(1, 3, 48, 48),)), str(path))
    return path, net


@pytest.fixture(scope="module")
def dynamic_program(tmp_path_factory):
    """The same kind of net saved with a dynamic batch (torch.export needs an example batch of 2 for that)."""
    torch.manual_seed(1)
    net = Net().eval()
    path = tmp_path_factory.mktemp("own_dyn") / "dyn.pt2"
    program = torch.export.export(net, (torch.randn(2, 3, 48, 48),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", max=64)},))
    torch.export.save(program, str(path))
    return path, net


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "labels.txt"
    path.write_text("chat\nchien\nÉcureuil\nhibou\nrenard\n", encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("target", resolve_targets("all"))
def test_a_pt2_exports_to_every_target_with_parity(program, labels_file, target, tmp_path, require_target):
    require_target(target)
    path, _ = program
    r = export(path, target, out_dir=tmp_path, task="classify", mean=MEAN, std=STD,
               labels=labels_file.read_text(encoding="utf-8").split())
    assert r.parity.passed and r.path.name.startswith("my_net")
    md = r.metadata
    assert md.task == "classify" and md.num_classes == 5 and md.labels[2] == "Écureuil"
    assert md.preprocessing.crop == [48, 48]
    if r.parity.numeric:
        with load(r.path) as m:
            top = m.classify(np.full((60, 80, 3), 128, np.uint8), top_k=2)
            assert len(top) == 2 and top[0].label in md.labels and 0 < top[0].score <= 1


@pytest.mark.slow
def test_the_artifact_computes_what_the_module_computes(program, tmp_path):
    """Not only parity against itself: the ONNX artifact's logits are the original module's on the same input."""
    path, net = program
    r = export(path, "onnx", out_dir=tmp_path, task="classify", mean=MEAN, std=STD)
    x = np.random.default_rng(1).standard_normal((1, 3, 48, 48)).astype(np.float32)
    with load(r.path) as m:
        got = next(iter(m.predict(x).values()))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "openvino", "tflite"])
def test_a_module_with_two_inputs(target, tmp_path, require_target):
    require_target(target)
    torch.manual_seed(0)
    examples = (torch.randn(1, 3, 32, 32), torch.randn(1, 6))
    r = export(TwoInputs().eval(), target, out_dir=tmp_path, name="two", task="classify", mean=MEAN, std=STD,
               example_inputs=examples)
    assert r.parity.passed and [i.shape for i in r.metadata.inputs] == [[1, 3, 32, 32], [1, 6]]
    assert r.metadata.preprocessing is None      # several inputs: the app prepares each
    with load(r.path) as m:
        out = next(iter(m.predict([e.numpy() for e in examples]).values()))
    assert out.shape == (1, 3)


def test_int8_of_a_two_input_model_is_refused(tmp_path):
    with pytest.raises(ExportError, match="takes 2 inputs: export it at fp32 or fp16"):
        export(TwoInputs().eval(), "onnx", precision="int8", out_dir=tmp_path, task="classify", mean=MEAN, std=STD,
               example_inputs=(torch.randn(1, 3, 32, 32), torch.randn(1, 6)))
    assert list(tmp_path.iterdir()) == []


def test_an_untraceable_module_names_the_line_and_the_fix(tmp_path):
    with pytest.raises(ExportError) as e:
        export(Branchy().eval(), "onnx", out_dir=tmp_path, task="classify", mean=MEAN, std=STD, imgsz=32)
    msg = str(e.value)
    assert msg.startswith("torch.export cannot trace Branchy: ")
    assert "test_own_model.py:" in msg and "if y.sum() > 0" in msg and "draft_export" in msg
    assert "\n" not in msg


def test_missing_or_wrong_flags_name_the_flag(program, tmp_path):
    path, _ = program
    with pytest.raises(ExportError, match="give --mean"):
        export(path, "onnx", out_dir=tmp_path, task="classify", std=STD)
    with pytest.raises(ExportError, match="give --std"):
        export(path, "onnx", out_dir=tmp_path, task="classify", mean=MEAN)
    with pytest.raises(ExportError, match="--task 'detect' is not a task"):
        export(path, "onnx", out_dir=tmp_path, task="detect", mean=MEAN, std=STD)
    with pytest.raises(ExportError, match="give its task"):
        export(path, "onnx", out_dir=tmp_path)
    with pytest.raises(ExportError, match="--labels has 2 names but the model's first output has 5 classes"):
        export(path, "onnx", out_dir=tmp_path, task="classify", mean=MEAN, std=STD, labels=["a", "b"])
    with pytest.raises(ExportError, match="--mean takes 3 finite numbers"):
        export(path, "onnx", out_dir=tmp_path, task="classify", mean=(0.5, 0.5), std=STD)
    with pytest.raises(ExportError, match="--imgsz 64 cannot apply"):
        export(path, "onnx", out_dir=tmp_path, task="classify", mean=MEAN, std=STD, imgsz=64)
    with pytest.raises(ExportError, match="zoo model: task, mean"):
        export("emo_1m", "onnx", out_dir=tmp_path, task="classify")
    assert list(tmp_path.iterdir()) == []


def _rewrite(src, dst, edit):
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for item in a.infolist():
            data = edit(item.filename, a.read(item.filename))
            if data is not None:
                b.writestr(item, data)
    return dst


def test_a_pt2_with_pickled_parts_is_refused_unread(program, tmp_path, monkeypatch):
    path, _ = program

    def pickled_weight(name, data):
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data
    bad = _rewrite(path, tmp_path / "pickled.pt2", pickled_weight)
    calls = []
    monkeypatch.setattr(torch.export, "load", lambda *a, **k: calls.append(a))
    with pytest.raises(ExportError, match="holds pickled data, which is not loaded.*\\(pickled\\)"):
        export(bad, "onnx", out_dir=tmp_path / "out", task="classify", mean=MEAN, std=STD)
    legacy = _rewrite(path, tmp_path / "legacy.pt2",
                      lambda n, d: d if "/data/weights/" not in n else None)
    with zipfile.ZipFile(legacy, "a") as z:
        z.writestr(legacy.stem + "/data/weights/model.pt", b"\x80\x04legacy")
    with pytest.raises(ExportError, match="legacy pickled weights"):
        export(legacy, "onnx", out_dir=tmp_path / "out", task="classify", mean=MEAN, std=STD)
    torch.save(Net(), tmp_path / "module.pt2")      # a pickled module renamed: never unpickled
    with pytest.raises(ExportError, match="not a torch.export archive"):
        export(tmp_path / "module.pt2", "onnx", out_dir=tmp_path / "out", task="classify", mean=MEAN, std=STD)
    (tmp_path / "text.pt2").write_text("hello")
    with pytest.raises(ExportError, match="is not a .pt2 archive"):
        export(tmp_path / "text.pt2", "onnx", out_dir=tmp_path / "out", task="classify", mean=MEAN, std=STD)
    assert calls == [] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_exports_a_pt2_and_names_missing_flags(program, labels_file, tmp_path, capsys):
    path, _ = program
    out = tmp_path / "out"
    code = main(["export", str(path), "-t", "onnx", "--task", "classify", "--mean", "0.5,0.4,0.3",
                 "--std", "0.2 0.25 0.3", "--labels", str(labels_file), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    with load(out / "my_net.onnx") as m:
        assert m.metadata.labels[0] == "chat" and m.metadata.preprocessing.mean == [0.5, 0.4, 0.3]
    for args, needle in ((["--mean", "0.5"], "--std"), ([], "--task"),
                         (["--task", "classify", "--mean", "a,b", "--std", "1"], "--mean 'a,b'")):
        capsys.readouterr()
        code = main(["export", str(path), "-t", "onnx", "--out", str(tmp_path / "x"),
                     *(["--task", "classify"] if args and args[0] == "--mean" else []), *args])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and "Traceback" not in err
    capsys.readouterr()
    code = main(["export", "emo_1m", "-t", "onnx", "--task", "classify", "--out", str(tmp_path / "x")])
    assert code == 2 and "describe your own model" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("target", [t for t in resolve_targets("all") if t != "coreml"])
def test_dynamic_batch_is_checked_at_two_batch_sizes(dynamic_program, target, tmp_path, require_target):
    from mobilevision.export.targets import get_target

    require_target(target)
    if not getattr(get_target(target), "dynamic_batch", False):
        pytest.skip(f"{target} writes batch-1 artifacts only")
    path, net = dynamic_program
    r = export(path, target, out_dir=tmp_path, task="classify", mean=MEAN, std=STD, dynamic_batch=True)
    assert r.metadata.inputs[0].shape[0] == -1 and r.metadata.outputs[0].shape == [-1, 5]
    assert r.parity.passed and r.parity.samples == 5          # 4 single inputs + the 4 as one batch
    x = np.random.default_rng(2).standard_normal((3, 3, 48, 48)).astype(np.float32)
    with load(r.path) as m:
        if m.metadata.preprocessing.layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        for n in (3, 1, 2):   # batch sizes in any order, on one loaded model
            out = next(iter(m.predict(x[:n]).values()))
            assert out.shape == (n, 5)


@pytest.mark.slow
def test_executorch_dynamic_batch_is_bounded(dynamic_program, tmp_path, require_target):
    """ExecuTorch plans its buffers for the bound of a dynamic batch: 1..16, said at export and at run time."""
    from mobilevision.errors import InputMismatch
    from mobilevision.export.targets.executorch import BATCH_BOUND

    require_target("executorch")
    path, net = dynamic_program
    r = export(path, "executorch", out_dir=tmp_path, task="classify", mean=MEAN, std=STD, dynamic_batch=True)
    (shown,) = r.parity.structure["inputs"]
    assert shown["shape"][0] == -1 and shown["max_batch"] == BATCH_BOUND
    x = np.random.default_rng(3).standard_normal((BATCH_BOUND + 1, 3, 48, 48)).astype(np.float32)
    with load(r.path) as m:
        assert m.inputs[0].shape[0] == -1
        out = next(iter(m.predict(x[:BATCH_BOUND]).values()))
        np.testing.assert_allclose(out, net(torch.from_numpy(x[:BATCH_BOUND])).detach().numpy(), atol=1e-5)
        with pytest.raises(InputMismatch, match=f"batch of 1 to {BATCH_BOUND} .*split the batch"):
            m.predict(x)


@pytest.mark.slow
def test_dynamic_batch_where_a_target_or_the_program_cannot(program, dynamic_program, tmp_path):
    with pytest.raises(ExportError, match="exported with a fixed batch of 1: for --dynamic-batch"):
        export(program[0], "onnx", out_dir=tmp_path, task="classify", mean=MEAN, std=STD, dynamic_batch=True)
    path, _ = dynamic_program
    with pytest.raises(ExportError, match="target coreml writes batch-1 artifacts only"):
        export(path, "coreml", out_dir=tmp_path, task="classify", mean=MEAN, std=STD, dynamic_batch=True)
    with pytest.raises(ExportError, match="calibrated and checked at batch 1"):
        export(path, "onnx", precision="int8", out_dir=tmp_path, task="classify", mean=MEAN, std=STD,
               dynamic_batch=True)
    results = export_all(path, ["onnx", "coreml"], out_dir=tmp_path, task="classify", mean=MEAN, std=STD,
                         dynamic_batch=True)
    assert [r.metadata.inputs[0].shape[0] for r in results] == [-1, 1]   # coreml stays batch 1


def test_hostile_or_odd_inputs_are_one_line(program, tmp_path):
    path, _ = program
    with pytest.raises(ExportError, match="drop --labels"):
        export(path, "onnx", out_dir=tmp_path, task="anomaly", mean=MEAN, std=STD, labels=["a"])
    gray = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    gray(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ExportError, match="takes an RGB image"):
        export(gray.eval(), "onnx", out_dir=tmp_path, task="classify", mean=MEAN, std=STD,
               example_inputs=(torch.zeros(1, 1, 32, 32),))

    def bomb(name, data):   # an index that unpacks to far more than torch.export.save ever writes
        if name.endswith("_weights_config.json"):
            return data + b" " * (17 << 20)
        return data
    with pytest.raises(ExportError, match="unpacks to .* bytes"):
        export(_rewrite(path, tmp_path / "bomb.pt2", bomb), "onnx", out_dir=tmp_path / "o", task="classify",
               mean=MEAN, std=STD)
    assert not (tmp_path / "o").exists()
