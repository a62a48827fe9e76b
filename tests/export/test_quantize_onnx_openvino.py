"""Static int8 export (ONNX Runtime QDQ, OpenVINO NNCF): accuracy, real quantised ops, --keep-float, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mobilevision.errors import ExportError
from mobilevision.export.targets.base import ExportOptions
from mobilevision.export.targets.module_scopes import matches
from mobilevision.export.targets.onnx import OnnxTarget
from mobilevision.export.targets.openvino import OpenVINOTarget
from mobilevision.runtime.backends import open_backend
from mobilevision.testing import ConvAttention as TinyAttention

TARGETS = {"onnx": (OnnxTarget, "ort"), "openvino": (OpenVINOTarget, "openvino")}
METADATA = json.dumps({"model": "tiny_int8_net", "precision": "int8"})
SIZE = (1, 3, 32, 32)


class Block(nn.Module):
    """Residual conv block; its bias-free conv gets the BatchNorm folded in by the exporter."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.bn(self.conv(x)))


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU())
        self.stages = nn.Sequential(Block(16), Block(16))
        self.drop = nn.Dropout(0.1)  # exports to nothing: a module without layers
        self.head = nn.Sequential(nn.Conv2d(16, 32, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.stages(self.stem(x))))


def _arrays(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SIZE).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def net() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet().eval()
    with torch.no_grad():  # BatchNorm statistics of real data, so folding changes the conv weights
        for bn in (model.stages[0].bn, model.stages[1].bn):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def calibration() -> list[np.ndarray]:
    return _arrays(0, 16)


@pytest.fixture(scope="module")
def build(tmp_path_factory, net, calibration):
    """build(target, keep_float) -> (artifact path, options), converted once per module."""
    cache: dict[tuple[str, tuple[str, ...]], tuple[Path, ExportOptions]] = {}

    def _build(target: str, keep_float: tuple[str, ...] = ()) -> tuple[Path, ExportOptions]:
        if (target, keep_float) not in cache:
            work = tmp_path_factory.mktemp(f"{target}_int8")
            tgt = TARGETS[target][0]()
            options = ExportOptions(precision="int8", calibration=calibration, keep_float=keep_float, workdir=work)
            handle = tgt.convert(net, torch.from_numpy(calibration[0]), options)
            path = work / f"tiny{tgt.suffix}"
            tgt.save(handle, path, METADATA)
            cache[target, keep_float] = path, options
        return cache[target, keep_float]

    return _build


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _run(path: Path, backend: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    b = open_backend(path, backend=backend)
    try:
        return [np.array(b.run([x])[0]) for x in inputs]
    finally:
        b.close()


# ----------------------------------------------------------------------------------------------- accuracy


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_int8_close_to_pytorch_but_not_fp32(build, net, target):
    path, _ = build(target)
    inputs = _arrays(1, 8)  # same distribution as the calibration set, different samples
    with torch.no_grad():
        ref = [net(torch.from_numpy(x)).numpy() for x in inputs]
    got = _run(path, TARGETS[target][1], inputs)
    cos = [_cosine(r, g) for r, g in zip(ref, got)]
    assert min(cos) > 0.98, cos
    assert max(float(np.abs(r - g).max()) for r, g in zip(ref, got)) > 1e-5  # really quantised, not fp32


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_int8_attention_close_to_pytorch(tmp_path, calibration, target):
    """Softmax over 1024 positions: quantised with ORT's fixed [0, 1] uint8 range its ~1e-3 weights round to 0."""
    import onnx

    torch.manual_seed(0)
    net = TinyAttention().eval()
    tgt_cls, backend = TARGETS[target]
    options = ExportOptions(precision="int8", calibration=calibration, workdir=tmp_path)
    handle = tgt_cls().convert(net, torch.from_numpy(calibration[0]), options)
    path = tmp_path / f"attn{tgt_cls.suffix}"
    tgt_cls().save(handle, path, METADATA)
    inputs = _arrays(1, 4)
    with torch.no_grad():
        ref = [net(torch.from_numpy(x)).numpy() for x in inputs]
    cos = [_cosine(r, g) for r, g in zip(ref, _run(path, backend, inputs))]
    assert min(cos) > 0.98, cos
    if target == "onnx":
        graph = onnx.load(str(path)).graph
        softmax = next(n for n in graph.node if n.op_type == "Softmax")
        # not pinned to [0, 1]: the only quantiser of its output is the MatMul's, from the calibrated range
        scales = [n.input[1] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == softmax.output[0]]
        inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        assert all(float(inits[s]) * 255 < 0.999 for s in scales), [float(inits[s]) for s in scales]


@pytest.mark.slow
def test_openvino_int8_of_an_attention_graph_is_quantised_as_a_transformer(tmp_path, calibration, build):
    """LayerNorm / softmax in the graph: NNCF's transformer scheme with float matrix products (int8 products of
    activations made EMO-1M's int8 slower than fp32), convolutions still int8; a CNN keeps the CNN scheme."""
    import openvino as ov

    torch.manual_seed(0)
    net = TinyAttention().eval()
    options = ExportOptions(precision="int8", calibration=calibration, workdir=tmp_path)
    handle = OpenVINOTarget().convert(net, torch.from_numpy(calibration[0]), options)
    path = tmp_path / "attn.xml"
    OpenVINOTarget().save(handle, path, METADATA)
    ops = ov.Core().read_model(str(path)).get_ordered_ops()
    matmuls = [op for op in ops if op.get_type_name() == "MatMul"]
    assert matmuls and not any(i.get_source_output().get_node().get_type_name() == "FakeQuantize"
                               for op in matmuls for i in op.inputs())
    assert all(act == "FakeQuantize" and w == "i8" for act, w, _ in _ov_convs(path).values())
    assert "transformer" in options.quantization["scheme"] and "Softmax" in options.quantization["scheme"]
    assert "performance preset" in build("openvino")[1].quantization["scheme"]


@pytest.mark.parametrize("target", TARGETS)
def test_int8_artifact_keeps_metadata_and_validates(build, target):
    path, _ = build(target)
    tgt_cls, backend = TARGETS[target]
    assert "int8" in tgt_cls.precisions
    structure = tgt_cls().validate(path)
    assert structure["ops"]
    b = open_backend(path, backend=backend)
    try:
        assert b.embedded_metadata() == METADATA
    finally:
        b.close()


# -------------------------------------------------------------------------------------- quantised graphs


def _onnx_conv_weights(path: Path) -> dict[str, tuple[str, bool]]:
    """Conv weight parameter name -> (op producing the Conv's activation input, weight stored as int8)."""
    import onnx

    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        act = producer.get(node.input[0])
        w = node.input[1]
        if w in inits:  # float weight straight from the initializer
            out[w] = (act.op_type if act else "input", False)
        else:
            dq = producer[w]
            assert dq.op_type == "DequantizeLinear"
            q = inits[dq.input[0]]
            out[q.name.removesuffix("_quantized")] = (act.op_type if act else "input",
                                                      q.data_type == onnx.TensorProto.INT8)
    return out


def _ov_convs(path: Path) -> dict[str, tuple[str, str, str]]:
    """Convolution friendly name -> (type of its activation input, element type and name of its weight Constant)."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    out = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        act = op.input(0).get_source_output().get_node()
        w = op.input(1).get_source_output().get_node()
        while w.get_type_name() != "Constant":  # Constant(i8) -> Convert -> [Subtract] -> Multiply
            w = w.input(0).get_source_output().get_node()
        out[op.get_friendly_name()] = (act.get_type_name(), w.get_output_element_type(0).get_type_name(),
                                       w.get_friendly_name())
    return out


def test_onnx_int8_is_qdq_with_int8_weights(build):
    path, options = build("onnx")
    ops = OnnxTarget().validate(path)["ops"]
    assert ops["QuantizeLinear"] >= 4 and ops["DequantizeLinear"] >= 8
    convs = _onnx_conv_weights(path)
    assert len(convs) == 4
    assert all(int8 and act == "DequantizeLinear" for act, int8 in convs.values()), convs
    assert options.quantization["kept_float"] == []


def test_onnx_input_range_covers_every_calibration_input(build, calibration):
    """The input's uint8 scale spans the min..max of all calibration arrays, not of the first or last few."""
    import onnx
    from onnx import numpy_helper

    path, _ = build("onnx")
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    lo, hi = min(0.0, min(float(x.min()) for x in calibration)), max(0.0, max(float(x.max()) for x in calibration))
    assert float(inits["image_scale"]) == pytest.approx((hi - lo) / 255, rel=1e-5)


def test_openvino_int8_has_fakequantize_and_int8_weights(build):
    path, _ = build("openvino")
    assert OpenVINOTarget().validate(path)["ops"]["FakeQuantize"] >= 4
    convs = _ov_convs(path)
    assert len(convs) == 4
    assert all(act == "FakeQuantize" and w == "i8" for act, w, _ in convs.values()), convs


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_quantization_facts_recorded(build, calibration, target):
    _, options = build(target, ("head",))
    q = json.loads(json.dumps(options.quantization))  # JSON-serialisable as the sidecar needs
    tool = {"onnx": "onnxruntime.quantization 1.", "openvino": "nncf 3."}[target]
    assert q["tool"].startswith(tool)
    assert "int8" in q["scheme"] and "calibration" in q["scheme"].lower()
    assert q["calibration_samples"] == len(calibration)
    assert q["kept_float_modules"] == ["head"]
    assert q["kept_float"]


# ------------------------------------------------------------------------------------------- keep_float


def test_onnx_keep_float_head(build):
    import onnx

    path, options = build("onnx", ("head",))
    convs = _onnx_conv_weights(path)
    assert convs["head.0.weight"][1] is False  # float weight, no DequantizeLinear in front of it
    others = {k: v for k, v in convs.items() if k != "head.0.weight"}
    assert len(others) == 3 and all(int8 for _, int8 in others.values()), others
    kept = options.quantization["kept_float"]
    assert {"node_linear", "node_mean"} <= set(kept) and any(n.startswith("node_conv2d") for n in kept)
    graph = onnx.load(str(path)).graph
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    assert gemm.input[1] == "head.4.weight"  # the Linear's weight stayed a float initializer
    kept_outputs = {o for n in graph.node if n.name in kept for o in n.output}
    quantized_inputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert not kept_outputs & quantized_inputs  # no kept layer's output is quantised again


@pytest.mark.slow
def test_onnx_keep_float_maps_batchnorm_folded_conv(build):
    """The folded Conv carries the BatchNorm's scope; its parameter name still ties it to stages.1.conv."""
    import onnx

    path, options = build("onnx", ("stages.1.conv",))
    convs = _onnx_conv_weights(path)
    assert convs["stages.1.conv.weight"][1] is False
    assert convs["stages.0.conv.weight"][1] is True and convs["head.0.weight"][1] is True
    graph = onnx.load(str(path)).graph
    conv = next(n for n in graph.node if n.op_type == "Conv" and n.input[1] == "stages.1.conv.weight")
    assert options.quantization["kept_float"] == [conv.name]


def test_openvino_keep_float_head(build):
    path, options = build("openvino", ("head",))
    convs = {w_name: (act, w) for act, w, w_name in _ov_convs(path).values()}
    assert convs["head.0.weight"][1] == "f32"
    assert convs["head.0.weight"][0] != "FakeQuantize"  # nothing quantises its input
    others = [v for k, v in convs.items() if k != "head.0.weight"]
    assert len(others) == 3 and all(act == "FakeQuantize" and w == "i8" for act, w in others), convs
    kept = options.quantization["kept_float"]
    assert "node_linear/WithoutBiases" in kept and any(n.startswith("node_conv2d") for n in kept)


@pytest.mark.slow
def test_openvino_keep_float_folded_conv_and_quiet(build, capfd):
    capfd.readouterr()
    path, options = build("openvino", ("stages.1.conv",))
    out, err = capfd.readouterr()
    assert "Statistics collection" not in out + err and "nncf" not in (out + err).lower()  # NNCF kept quiet
    convs = {w_name: (name, w) for name, (act, w, w_name) in _ov_convs(path).items()}
    assert convs["stages.1.conv.weight"][1] == "f32"
    assert sum(w == "i8" for _, w in convs.values()) == 3
    kept = options.quantization["kept_float"]
    assert convs["stages.1.conv.weight"][0] in kept
    assert not {name for k, (name, _) in convs.items() if k != "stages.1.conv.weight"} & set(kept)


def test_prefix_matches_whole_components():
    assert matches("head", "head") and matches("head.fc", "head") and matches("stages.3.0.conv", "stages.3.0")
    assert not matches("header", "head") and not matches("stages.30", "stages.3")


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("target", TARGETS)
def test_unknown_keep_float_prefix(tmp_path, net, calibration, target):
    options = ExportOptions(precision="int8", calibration=calibration, keep_float=("hea",), workdir=tmp_path)
    with pytest.raises(ExportError, match=r"'hea'.*head") as e:
        TARGETS[target][0]().convert(net, torch.from_numpy(calibration[0]), options)
    assert "stages" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_keep_float_module_without_layers(tmp_path, net, calibration):
    options = ExportOptions(precision="int8", calibration=calibration, keep_float=("drop",), workdir=tmp_path)
    with pytest.raises(ExportError, match=r"'drop'.*no layer"):
        OnnxTarget().convert(net, torch.from_numpy(calibration[0]), options)


@pytest.mark.parametrize("target", TARGETS)
def test_int8_needs_calibration(tmp_path, net, target):
    options = ExportOptions(precision="int8", workdir=tmp_path)
    with pytest.raises(ExportError, match="int8 needs calibration inputs"):
        TARGETS[target][0]().convert(net, torch.zeros(SIZE), options)


def test_calibration_of_wrong_shape(tmp_path, net):
    options = ExportOptions(precision="int8", calibration=[np.zeros((1, 3, 16, 16), np.float32)], workdir=tmp_path)
    with pytest.raises(ExportError, match=r"calibration input 0 has shape \[1, 3, 16, 16\]"):
        OnnxTarget().convert(net, torch.zeros(SIZE), options)
