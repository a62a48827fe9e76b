"""One loaded Model shared by several threads gives every caller its own, correct answer."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from mobilevision.errors import MobileVisionError

CASES = {"ort": ("onnx", "ort"), "openvino": ("openvino", "openvino"), "litert": ("tflite", "litert")}
THREADS, CALLS = 4, 40


def _hammer(model, inputs, reference) -> list[str]:
    """Each thread runs its own inputs CALLS times; returns what went wrong (empty: all right)."""
    problems: list[str] = []
    start = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        start.wait()
        for i in range(CALLS):
            k = (t + i) % len(inputs)
            try:
                out = model.predict(inputs[k])[model.output_names[0]]
            except Exception as e:  # noqa: BLE001 - any exception is a failure of the guarantee
                problems.append(f"thread {t} call {i}: {type(e).__name__}: {e}")
                return
            if not np.allclose(out, reference[k], rtol=1e-5, atol=1e-5):
                problems.append(f"thread {t} call {i}: wrong output for input {k}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_shared_model_is_right_under_threads(toy_exports, case):
    from mobilevision.runtime import load

    target, backend = CASES[case]
    rng = np.random.default_rng(1)
    with load(toy_exports[target].path, backend=backend) as model:
        shape = model.inputs[0].shape
        inputs = [rng.standard_normal(shape).astype(np.float32) for _ in range(8)]
        reference = [model.predict(x)[model.output_names[0]].copy() for x in inputs]
        assert len({r.tobytes() for r in reference}) == len(reference)   # distinct answers: a mix-up shows
        problems = _hammer(model, inputs, reference)
    assert not problems, f"{len(problems)} bad calls, first: {problems[:3]}"


@pytest.mark.parametrize("case", list(CASES))
def test_closed_model_refuses_calls(toy_exports, case):
    from mobilevision.runtime import load

    target, backend = CASES[case]
    model = load(toy_exports[target].path, backend=backend)
    x = np.zeros(model.inputs[0].shape, np.float32)
    model.close()
    with pytest.raises(MobileVisionError, match="closed"):
        model.predict(x)
    model.close()   # closing twice is harmless
