"""The OpenVINO backend's inference call: inputs copied into the request's own tensors (as benchmark_app runs a
request), outputs the caller's own copies, and infer's own path for what does not match (dynamic shapes, dtypes)."""
from __future__ import annotations

import numpy as np
import pytest

ov = pytest.importorskip("openvino")

from mobilevision.runtime.backends.openvino import run_request  # noqa: E402


def _model(batch: int | str = 2):
    """y = relu(x) @ w, x: batch x 4 (a dynamic batch when ``batch`` is a name)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("MatMul", ["r", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})   # not bf16, on CPUs that have it
    return compiled, numpy_helper.to_array(w)


class _Spy:
    """A request that records how ``infer`` was called."""

    def __init__(self, request):
        self.request, self.calls = request, []

    def __getattr__(self, name):
        return getattr(self.request, name)

    def infer(self, *args, **kwargs):
        self.calls.append(args)
        return self.request.infer(*args, **kwargs)


def test_matching_inputs_run_the_request_as_it_is_and_outputs_are_copies():
    compiled, w = _model()
    request = _Spy(compiled.create_infer_request())
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((2, 4)).astype(np.float32) for _ in range(2))
    (y1,) = run_request(request, [x1])
    kept = y1.copy()
    (y2,) = run_request(request, [x2])
    np.testing.assert_allclose(y1, np.maximum(x1, 0) @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y2, np.maximum(x2, 0) @ w, rtol=1e-5, atol=1e-6)
    assert np.array_equal(y1, kept)              # the second call did not write into the first result
    x2[:] = 100.0                                 # nor does the caller's input stay tied to the request
    (y3,) = run_request(request, [x1])
    np.testing.assert_array_equal(y3, y1)
    assert request.calls == [(), (), ()]          # the inputs went into the request's own tensors


@pytest.mark.parametrize("case", ["dynamic-batch", "float64", "fortran-order"])
def test_what_does_not_match_goes_through_infer(case):
    compiled, w = _model("N" if case == "dynamic-batch" else 2)
    request = compiled.create_infer_request()
    rng = np.random.default_rng(1)
    batches = (2, 5, 1, 5) if case == "dynamic-batch" else (2, 2)
    for n in batches:
        x = rng.standard_normal((n, 4)).astype(np.float32)
        given = x.astype(np.float64) if case == "float64" else (np.asfortranarray(x) if case == "fortran-order" else x)
        (y,) = run_request(request, [given])
        assert y.shape == (n, 3)
        np.testing.assert_allclose(y, np.maximum(x, 0) @ w, rtol=1e-5, atol=1e-6)
