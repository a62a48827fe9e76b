"""Adversarial checks of the channels-last EMO attention and the runtime-aware int8 (LiteRT XNNPACK rounds,
OpenVINO transformer scheme), the LiteRT speed profiler text and the channels-last global-pool count."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mobilevision.export.targets.base import ExportOptions
from mobilevision.models.emo import IRMB, emo_1m
from mobilevision.testing import ConvAttention as OVAttention, LayerNormAttention as TinyAttention

SHAPE = (1, 3, 32, 32)
METADATA = json.dumps({"model": "tiny_attack", "precision": "int8"})   # OpenVINO


def _tfl_metadata() -> str:
    from mobilevision.export.metadata import ModelMetadata, TensorSpec

    return ModelMetadata(task="features", model="tiny_attack", target="", precision="int8",
                         inputs=[TensorSpec("image", list(SHAPE))], outputs=[TensorSpec("logits", [1, 10])]).to_json()


# ------------------------------------------------------------------------------------------------ EMO layouts


def _randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            m.weight.data = 1 + 0.1 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean = 0.1 * torch.randn(m.running_mean.shape, generator=g)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g)
    return model.eval()


def _official(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, IRMB):
            m.channels_last = False
    return model


@pytest.fixture(scope="module")
def emo():
    torch.manual_seed(0)
    return _randomised(emo_1m(drop_path_rate=0.0))


@pytest.mark.parametrize("hw", [(33, 33), (65, 65), (97, 97), (130, 130), (224, 160), (49, 113)])
def test_emo_channels_last_equals_official_odd_sizes_batch3(emo, hw):
    torch.manual_seed(1)
    x = torch.randn(3, 3, *hw)
    with torch.no_grad():
        ours, official = emo(x), _official(emo)(x)
    assert ours.shape == official.shape == (3, 1000)
    assert (ours - official).abs().max() <= 1e-5 * official.abs().max()
    # each image alone == its row of the batch (no cross-batch mixing in the window split)
    with torch.no_grad():
        single = emo(x[1:2])
    assert torch.allclose(single, ours[1:2], rtol=0, atol=1e-5 * official.abs().max().item())


@pytest.mark.parametrize("hw", [(5, 5), (6, 13), (7, 7), (8, 15), (14, 21), (3, 1)])
def test_block_attention_last_equals_official_on_odd_maps(emo, hw):
    block = emo.stage3[1]
    x = torch.randn(3, block.qk.conv.in_channels, *hw)
    with torch.no_grad():
        got, ref = block.attention_last(x), block.attention(block.norm(x))
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_emo_training_gradients_equal_between_layouts(emo):
    ours, official = copy.deepcopy(emo).train(), _official(emo).train()
    x = torch.randn(3, 3, 65, 97)
    losses = []
    for m in (ours, official):
        torch.manual_seed(5)
        out = m(x)
        loss = (out ** 2).mean()
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)
    named = dict(official.named_parameters())
    scale = max(q.grad.abs().max().item() for q in named.values() if q.grad is not None)
    worst = 0.0
    for name, p in ours.named_parameters():
        q = named[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            worst = max(worst, (p.grad - q.grad).abs().max().item() / scale)
    assert worst < 1e-3, worst
    # BatchNorm running statistics updated identically
    for (n1, b1), (n2, b2) in zip(ours.named_buffers(), official.named_buffers()):
        assert n1 == n2 and torch.allclose(b1.float(), b2.float(), atol=1e-5), n1


@pytest.mark.slow
def test_emo_jit_trace_and_torch_export_match_eager(emo):
    x = torch.randn(2, 3, 97, 130)
    with torch.no_grad():
        ref = _official(emo)(x)
        traced = torch.jit.trace(emo, x, check_trace=False)
        assert torch.allclose(traced(x), ref, rtol=0, atol=1e-5 * ref.abs().max().item())
        ep = torch.export.export(emo, (x,))
        assert torch.allclose(ep.module()(x), ref, rtol=0, atol=1e-5 * ref.abs().max().item())
    # 224: stage 4 is one 7x7 window (the n1 == n2 == 1 shortcut eager; general path traced)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = _official(emo)(x)
        traced = torch.jit.trace(emo, x, check_trace=False)
        assert torch.allclose(traced(x), ref, rtol=0, atol=1e-5 * ref.abs().max().item())


def test_emo_macs_same_in_both_layouts(emo):
    from mobilevision.complexity import count_macs

    assert count_macs(emo, (3, 224, 224)) == count_macs(_official(emo), (3, 224, 224))


class _Means(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.mean(self.dims)


def test_complexity_channels_last_pool_counts_like_nchw_pool():
    from mobilevision.complexity import count_macs

    nchw = count_macs(_Means((2, 3)), (8, 14, 10))
    assert nchw > 0
    # the same data channels-last (N, H, W, C): the same global pool
    assert count_macs(_Means((1, 2)), (14, 10, 8)) == nchw
    assert count_macs(_Means((-3, -2)), (14, 10, 8)) == nchw
    # a mean over one axis, or over all three, is not a spatial pool
    assert count_macs(_Means((1,)), (8, 14, 10)) == 0
    assert count_macs(_Means((1, 2, 3)), (8, 14, 10)) == 0


# ------------------------------------------------------------------------------------------------ LiteRT


def _inputs(n: int, seed: int, shape=SHAPE) -> list[np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g).numpy() for _ in range(n)]


@pytest.fixture(scope="module")
def attn():
    from mobilevision.registry import ModelCard

    torch.manual_seed(0)
    m = TinyAttention()
    m.model_card = ModelCard(name="tiny_attention", task="classify", input_size=SHAPE[1:], num_classes=10)
    return m.eval()


def _tflite(net, tmp: Path, name: str, precision="int8", keep_float=(), dynamic_batch=False):
    from mobilevision.export.targets.tflite import TFLiteTarget

    options = ExportOptions(precision=precision, calibration=_inputs(8, 1) if precision == "int8" else [],
                            keep_float=tuple(keep_float), input_names=("image",), output_names=("logits",),
                            workdir=tmp, dynamic_batch=dynamic_batch)
    target = TFLiteTarget()
    handle = target.convert(net, torch.from_numpy(_inputs(1, 0)[0]), options)
    path = tmp / f"{name}.tflite"
    target.save(handle, path, _tfl_metadata())
    return path, options


def _tfl_ops(path: Path) -> list[tuple[str, str, list[str]]]:
    """(op type, output tensor name, input tensor types) for each operator."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    graph = model.subgraphs[0]
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        out.append((codes.get(builtin, str(builtin)), graph.tensors[op.outputs[0]].name.decode(),
                    [types[graph.tensors[i].type] for i in op.inputs if i >= 0]))
    return out


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("content", [b"", b"not a flatbuffer at all" * 10, b"\x00" * 64])
def test_xnnpack_outside_on_garbage_raises_a_caught_type(content):
    """quantize_int8 only survives AttributeError / RuntimeError / ValueError from xnnpack_outside."""
    from mobilevision.runtime.backends.litert import xnnpack_outside

    with pytest.raises((AttributeError, RuntimeError, ValueError)):
        xnnpack_outside(content)


@pytest.mark.slow
def test_tflite_int8_attention_with_keep_float_keeps_modules_float(attn, tmp_path):
    path, options = _tflite(attn, tmp_path, "keep", keep_float=("proj", "stem"))
    q = options.quantization
    assert q["kept_float_modules"] == ["proj", "stem"]
    assert "error" not in q["xnnpack"], q["xnnpack"]
    ops = _tfl_ops(path)
    kept = [o for o in ops if o[0] in ("FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL")
            and ("Linear_proj" in o[1] or "Conv2d_stem" in o[1])]
    assert kept, ops
    assert all(set(t[:2]) == {"FLOAT32"} for _, _, t in kept), kept
    # the remaining weighted op not kept and not an XNNPACK-float type stays int8
    fc = [o for o in ops if o[0] == "FULLY_CONNECTED" and ("Linear_fc" in o[1] or o[1].startswith("serving_default"))]
    assert {o[0] for o in kept} >= {"FULLY_CONNECTED", "CONV_2D"}, kept
    if "FULLY_CONNECTED" not in q["float_op_types"]:
        assert fc and all(t[:2] == ["INT8", "INT8"] for _, _, t in fc), fc
    # runs, close to PyTorch
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=path.read_bytes())
    it.allocate_tensors()
    for x in _inputs(3, 2):
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        got = it.get_tensor(it.get_output_details()[0]["index"])
        with torch.no_grad():
            assert _cos(attn(torch.from_numpy(x)).numpy(), got) > 0.98


@pytest.mark.slow
def test_tflite_int8_dynamic_batch_attention(attn, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from mobilevision.runtime.backends.litert import xnnpack_outside

    from mobilevision.errors import ExportError

    try:
        path, options = _tflite(attn, tmp_path, "dyn", dynamic_batch=True)
    except ExportError as e:   # litert-torch's known limit (LayerNorm at an open batch): a clear error is fine
        assert "dynamic batch" in str(e)
        return
    q = options.quantization
    assert "error" not in q["xnnpack"], q["xnnpack"]
    parts, outside = xnnpack_outside(path.read_bytes())
    assert parts >= 1 and isinstance(outside, dict)
    it = Interpreter(model_content=path.read_bytes())
    idx = it.get_input_details()[0]["index"]
    it.resize_tensor_input(idx, [3, *SHAPE[1:]])
    it.allocate_tensors()
    x = np.concatenate(_inputs(3, 4))
    it.set_tensor(idx, x)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    assert got.shape == (3, 10)
    with torch.no_grad():
        ref = attn(torch.from_numpy(x)).numpy()
    for i in range(3):
        assert _cos(ref[i], got[i]) > 0.98


@pytest.mark.slow
def test_litert_speed_report_survives_missing_coverage(attn, tmp_path, monkeypatch):
    """Timing finished; LiteRT not listing its partitions must not throw the measurements away."""
    import mobilevision.runtime.backends.litert as litert
    from mobilevision.export.speed import measure

    fp32, _ = _tflite(attn, tmp_path, "fp32", precision="fp32")

    def unavailable(content):
        raise AttributeError("'Interpreter' object has no attribute '_get_ops_details'")

    monkeypatch.setattr(litert, "xnnpack_outside", unavailable)
    report = measure(fp32, fp32, "litert", _inputs(1, 3), budget_s=0.05)
    assert report.fp32_ms > 0 and report.int8_ms > 0
    assert "no per-op profiler" in (report.profiler or "") and "did not report XNNPACK's coverage" in report.profiler


@pytest.mark.slow
def test_litert_speed_report_names_outside_ops(attn, tmp_path):
    from mobilevision.export.speed import measure

    fp32, _ = _tflite(attn, tmp_path, "fp32", precision="fp32")
    report = measure(fp32, fp32, "litert", _inputs(1, 3), budget_s=0.05)
    assert "XNNPACK" in report.profiler


# ------------------------------------------------------------------------------------------------ OpenVINO


def _ov_convs(path: Path) -> dict[str, tuple[str, str]]:
    import openvino as ov

    out = {}
    for op in ov.Core().read_model(str(path)).get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        act = op.input(0).get_source_output().get_node()
        w = op.input(1).get_source_output().get_node()
        while w.get_type_name() != "Constant":
            w = w.input(0).get_source_output().get_node()
        out[op.get_friendly_name()] = (act.get_type_name(), w.get_output_element_type(0).get_type_name())
    return out


@pytest.mark.slow
def test_openvino_int8_attention_with_keep_float(tmp_path):
    from mobilevision.export.targets.openvino import OpenVINOTarget

    torch.manual_seed(0)
    net = OVAttention().eval()
    calib = [np.random.default_rng(i).standard_normal(SHAPE).astype(np.float32) for i in range(8)]
    options = ExportOptions(precision="int8", calibration=calib, keep_float=("qkv",), workdir=tmp_path)
    handle = OpenVINOTarget().convert(net, torch.from_numpy(calib[0]), options)
    path = tmp_path / "attn_keep.xml"
    OpenVINOTarget().save(handle, path, METADATA)
    q = options.quantization
    assert "transformer" in q["scheme"] and q["kept_float"], q
    convs = _ov_convs(path)
    assert len(convs) == 2, convs
    kept = {n: v for n, v in convs.items() if any(k in n for k in q["kept_float"])}
    assert len(kept) == 1, (convs, q["kept_float"])
    (act, w), = kept.values()
    assert act != "FakeQuantize" and w == "f32", kept
    others = [v for n, v in convs.items() if n not in kept]
    assert others and all(a == "FakeQuantize" and w == "i8" for a, w in others), convs
