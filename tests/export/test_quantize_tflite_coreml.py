"""int8 on TFLite (static: weights and activations, ai-edge-quantizer) and Core ML (8-bit weights,
fp16 compute, coremltools.optimize): accuracy, real int8 tensors, smaller files, --keep-float,
errors, the facts recorded in ``options.quantization``. Targets are driven directly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from mobilevision.errors import ExportError
from mobilevision.export.metadata import ModelMetadata, TensorSpec
from mobilevision.export.targets.base import ExportOptions
from mobilevision.export.targets.coreml import CoreMLTarget
from mobilevision.export.targets.tflite import TFLiteTarget
from mobilevision.registry import ModelCard
from mobilevision.runtime.backends import open_backend
from mobilevision.testing import LayerNormAttention, calibrate_random_weights

SHAPE = (1, 3, 32, 32)
# a model without an image input or a task of ours: the targets keep the NCHW float interface
METADATA = ModelMetadata(task="features", model="tiny_int8_net", target="", precision="int8",
                         inputs=[TensorSpec("image", list(SHAPE))], outputs=[TensorSpec("logits", [1, 10])]).to_json()


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.bn(self.conv(x)))


class TinyNet(nn.Module):
    """stem -> stages.{0,1} (residual conv-bn blocks in a ModuleList, a container that is never
    called itself) -> head (3x3 conv, 18k weights) -> fc."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.stages = nn.ModuleList([Block(32), Block(32)])
        self.head = nn.Sequential(nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU())
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.stages:
            x = block(x)
        return self.fc(self.head(x).mean((2, 3)))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    model = TinyNet()
    model.model_card = ModelCard(name="tiny_int8_net", task="classify", input_size=SHAPE[1:], num_classes=10)
    return calibrate_random_weights(model, seed=0, batches=2)


def _inputs(n: int, seed: int) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*SHAPE, generator=g).numpy() for _ in range(n)]


@pytest.fixture(scope="module")
def calibration() -> list[np.ndarray]:
    return _inputs(16, seed=1)


def _options(precision: str, calibration=(), keep_float=(), workdir=None) -> ExportOptions:
    return ExportOptions(precision=precision, calibration=list(calibration), keep_float=tuple(keep_float),
                         input_names=("image",), output_names=("logits",), **({"workdir": workdir} if workdir else {}))


def _tflite(net, tmp, name, calibration=(), keep_float=(), precision="int8"):
    """Convert and save with metadata; returns (path, options)."""
    target, options = TFLiteTarget(), _options(precision, calibration, keep_float, tmp)
    handle = target.convert(net, torch.from_numpy(_inputs(1, 0)[0]), options)
    path = tmp / f"{name}.tflite"
    target.save(handle, path, METADATA)
    return path, options


@pytest.fixture(scope="module")
def tflite_fp32(net, tmp_path_factory):
    return _tflite(net, tmp_path_factory.mktemp("tfl"), "fp32", precision="fp32")[0]


@pytest.fixture(scope="module")
def tflite_int8(net, calibration, tmp_path_factory):
    return _tflite(net, tmp_path_factory.mktemp("tfl"), "int8", calibration)


KEEP = ("head", "stages.1")


@pytest.fixture(scope="module")
def tflite_keep(net, calibration, tmp_path_factory):
    return _tflite(net, tmp_path_factory.mktemp("tfl"), "int8_keep", calibration, keep_float=KEEP)


def _cosines(net, path) -> list[float]:
    """Cosine between PyTorch and the artifact in the repo's LiteRT backend, on fresh inputs."""
    backend = open_backend(path, backend="litert")
    try:
        assert [(t.dtype, t.shape) for t in backend.inputs] == [("float32", list(SHAPE))]
        assert [t.dtype for t in backend.outputs] == ["float32"]
        out = []
        for x in _inputs(8, seed=2):
            with torch.no_grad():
                ref = net(torch.from_numpy(x)).numpy().ravel()
            got = backend.run([x])[0].ravel()
            out.append(float(ref @ got / (np.linalg.norm(ref) * np.linalg.norm(got))))
        assert backend.embedded_metadata() == METADATA
        return out
    finally:
        backend.close()


def _convs(path) -> list[tuple[str, str, str]]:
    """(output tensor name, input type, weight type) for every CONV_2D of the .tflite."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    graph = model.subgraphs[0]
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    out = []
    for op in graph.operators:
        if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CONV_2D:
            x, w = (graph.tensors[i] for i in op.inputs[:2])
            out.append((graph.tensors[op.outputs[0]].name.decode(), types[x.type], types[w.type]))
    return out


@pytest.mark.slow
def test_tflite_int8_close_to_pytorch_runs_in_litert_and_is_int8(net, tflite_fp32, tflite_int8):
    path, options = tflite_int8
    cos = _cosines(net, path)
    assert min(cos) > 0.98, cos
    convs = _convs(path)
    assert len(convs) == 4 and all(x == "INT8" and w == "INT8" for _, x, w in convs), convs
    assert all(x == "FLOAT32" for _, x, _ in _convs(tflite_fp32))
    assert path.stat().st_size < 0.5 * tflite_fp32.stat().st_size
    structure = TFLiteTarget().validate(path)
    assert structure["ops"]["QUANTIZE"] >= 1 and structure["ops"]["DEQUANTIZE"] >= 1
    assert structure["tensor_types"]["INT8"] > structure["tensor_types"]["FLOAT32"]


def test_tflite_int8_records_quantization(tflite_int8):
    q = tflite_int8[1].quantization
    assert json.loads(json.dumps(q)) == q
    assert q["tool"].startswith("ai-edge-quantizer ") and "int8" in q["scheme"]
    assert q["calibration_samples"] == 16 and q["kept_float"] == [] and q["kept_float_modules"] == []
    # every op of a conv net has an XNNPACK int8 kernel: nothing is left float, one partition
    assert q["float_op_types"] == [] and q["xnnpack"] == {"partitions": 1, "outside": {}, "fp32_partitions": 1,
                                                          "fp32_outside": {}}


@pytest.mark.slow
def test_tflite_int8_keeps_float_what_xnnpack_cannot_run_in_int8(calibration, tmp_path):
    """Fully int8, the attention net's batch matmuls / GELU / LayerNorm pieces fall out of XNNPACK onto TFLite's
    reference kernels (a slower artifact); the export keeps those op types float until XNNPACK takes it whole."""
    from mobilevision.runtime.backends.litert import xnnpack_outside

    torch.manual_seed(0)
    model = LayerNormAttention()
    model.model_card = ModelCard(name="tiny_attention", task="classify", input_size=SHAPE[1:], num_classes=10)
    model.eval()
    path, options = _tflite(model, tmp_path, "attn_int8", calibration)
    fp32 = _tflite(model, tmp_path, "attn_fp32", precision="fp32")[0]
    # XNNPACK runs as much of the int8 graph as of the fp32 one (here it leaves out the float matmul of q and k,
    # whose weights are not constant, in both)
    assert xnnpack_outside(path.read_bytes()) == xnnpack_outside(fp32.read_bytes())
    q = options.quantization
    assert q["float_op_types"] and set(q["float_op_types"]) <= set(TFLiteTarget().validate(path)["ops"])
    assert "float where XNNPACK has no int8 kernel" in q["scheme"]
    assert _convs(path) and all(x == "INT8" and w == "INT8" for _, x, w in _convs(path))   # the conv stays int8
    assert min(_cosines(model, path)) > 0.98


@pytest.mark.slow
def test_tflite_keep_float_leaves_named_convs_float(net, tflite_keep):
    path, options = tflite_keep
    convs = _convs(path)  # a fused op's name lists each source op's module stack, the conv's among them
    own = (f"{TinyNet.__module__}.TinyNet/torch.nn.modules.container.Sequential_head/torch.nn.modules.conv.Conv2d_0;",
           f"{TinyNet.__module__}.TinyNet/{Block.__module__}.Block_1/torch.nn.modules.conv.Conv2d_conv;")
    kept = [c for c in convs if any(o in c[0] for o in own)]
    assert len(kept) == 2 and all(c[1:] == ("FLOAT32", "FLOAT32") for c in kept), convs
    assert all(c[1:] == ("INT8", "INT8") for c in convs if c not in kept), convs
    q = options.quantization
    assert q["kept_float_modules"] == list(KEEP)
    assert {c[0] for c in kept} <= set(q["kept_float"])
    firsts = [n.split(";")[0] for n in q["kept_float"]]  # the op's own module stack (output name's first)
    assert all("Sequential_head" in f or f.endswith("Block_1") or "Block_1/" in f or f.startswith("serving_default")
               for f in firsts), firsts
    assert min(_cosines(net, path)) > 0.98


@pytest.mark.parametrize("target", [TFLiteTarget, CoreMLTarget])
@pytest.mark.parametrize("prefix", ["header", "hea", "stages.2"])  # whole components only; "head" exists
def test_unknown_keep_float_prefix_is_an_error(net, calibration, target, prefix):
    with pytest.raises(ExportError, match=rf"'{prefix}'.* TinyNet.*head.*stages\.0"):
        target().convert(net, torch.zeros(SHAPE), _options("int8", calibration, (prefix,)))


def test_tflite_int8_needs_calibration(net):
    with pytest.raises(ExportError, match="int8 needs calibration inputs"):
        TFLiteTarget().convert(net, torch.zeros(SHAPE), _options("int8"))
    with pytest.raises(ExportError, match=r"calibration input 0 has shape \[1, 3, 16, 16\]"):
        TFLiteTarget().convert(net, torch.zeros(SHAPE), _options("int8", [np.zeros((1, 3, 16, 16), np.float32)]))


def _coreml(net, tmp, name, precision, keep_float=()):
    target, options = CoreMLTarget(), _options(precision, _inputs(2, 3), keep_float, tmp)
    handle = target.convert(net, torch.from_numpy(_inputs(1, 0)[0]), options)
    path = tmp / f"{name}.mlpackage"
    target.save(handle, path, METADATA)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path, options, target.validate(path), size


def _weight_producers(path) -> list[tuple[str, str]]:
    """(op name, type of the op producing its 'weight' input) for the conv / linear ops of a saved
    ML Program, in program order (names differ between conversions: they carry trace counters)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    (function,) = spec.mlProgram.functions.values()
    (block,) = function.block_specializations.values()
    producer = {o.name: op.type for op in block.operations for o in op.outputs}
    return [(op.attributes["name"].immediateValue.tensor.strings.values[0],
             producer[op.inputs["weight"].arguments[0].name])
            for op in block.operations if "weight" in op.inputs and op.type in ("conv", "linear")]


@pytest.fixture(scope="module")
def coreml_exports(net, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coreml")
    return {name: _coreml(net, tmp, name, precision, keep)
            for name, precision, keep in (("fp32", "fp32", ()), ("fp16", "fp16", ()),
                                          ("int8", "int8", ()), ("int8_keep", "int8", KEEP))}


@pytest.mark.slow
def test_coreml_int8_has_8bit_weights_and_is_smaller(coreml_exports):
    path, options, structure, size = coreml_exports["int8"]
    assert structure["ops"].get("constexpr_affine_dequantize", 0) >= 3, structure["ops"]  # 2 blocks + head
    assert "constexpr_affine_dequantize" not in coreml_exports["fp16"][2]["ops"]
    assert structure["inputs"] == [{"name": "image", "shape": list(SHAPE), "dtype": "FLOAT32"}]
    assert [(o["name"], o["dtype"]) for o in structure["outputs"]] == [("logits", "FLOAT32")]
    assert size < coreml_exports["fp16"][3] < coreml_exports["fp32"][3]
    assert size < 0.4 * coreml_exports["fp32"][3]
    q = options.quantization
    assert json.loads(json.dumps(q)) == q
    assert q["tool"].startswith("coremltools ") and "fp16 compute" in q["scheme"] and "weights" in q["scheme"]
    assert q["calibration_samples"] == 0 and q["kept_float"] == [] and q["kept_float_modules"] == []
    import coremltools as ct

    assert ct.utils.load_spec(str(path)).description.metadata.userDefined["mobilevision"] == METADATA


def test_coreml_keep_float_leaves_named_weights_float(coreml_exports):
    quantized = _weight_producers(coreml_exports["int8"][0])
    kept_path, options, structure, _ = coreml_exports["int8_keep"]
    kept = _weight_producers(kept_path)
    # stem.0, stages.0.conv, stages.1.conv, head.0, fc (fc's 640 weights are too few to quantise)
    assert [t for _, t in quantized] == ["const", "constexpr_affine_dequantize", "constexpr_affine_dequantize",
                                         "constexpr_affine_dequantize", "const"], quantized
    assert [t for _, t in kept] == ["const", "constexpr_affine_dequantize", "const", "const", "const"], kept
    names = options.quantization["kept_float"]         # the weighted ops traced from stages.1 and head
    assert names == [kept[2][0], kept[3][0]], (names, kept)
    assert structure["ops"]["constexpr_affine_dequantize"] == 1
    assert options.quantization["kept_float_modules"] == list(KEEP)


def test_tflite_int8_without_litert_coverage_report_quantises_everything(net, calibration, tmp_path, monkeypatch):
    """A LiteRT that cannot list its delegate partitions: the fully int8 graph, and the record says why."""
    import mobilevision.runtime.backends.litert as litert

    def unavailable(content):
        raise AttributeError("'Interpreter' object has no attribute '_get_ops_details'")

    monkeypatch.setattr(litert, "xnnpack_outside", unavailable)
    path, options = _tflite(net, tmp_path, "int8_nocoverage", calibration)
    q = options.quantization
    assert q["float_op_types"] == [] and "did not report XNNPACK's coverage (AttributeError" in q["xnnpack"]["error"]
    assert all(x == "INT8" and w == "INT8" for _, x, w in _convs(path))
