"""Careless inputs to a loaded model, on each of the three CPU backends: one clear error each."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from mobilevision.errors import ArtifactError, InputMismatch

BACKENDS = {"ort": "onnx", "openvino": "openvino", "litert": "tflite"}


def _bad_inputs(shape):
    nan = np.zeros(shape, np.float32)
    nan[0, 0, 0, 0] = np.nan
    inf = np.zeros(shape, np.float32)
    inf[..., -1] = np.inf
    return {
        "none": (None, "numpy array"),
        "0-d array": (np.array(1.0, np.float32), "0-d"),
        "python int": (5, "int"),
        "string": ("image.png", "str"),
        "nan": (nan, "NaN/Inf"),
        "inf": (inf, "NaN/Inf"),
        "wrong dtype": (np.zeros(shape, np.float64), "dtype"),
        "wrong rank": (np.zeros(shape[1:], np.float32), "rank"),
        "empty list": ([], "input(s)"),
        "missing key": ({"nope": np.zeros(shape, np.float32)}, "missing"),
    }


CASES = list(_bad_inputs((1, 3, 4, 4)))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_bad_predict_input(toy_exports, backend, case):
    from mobilevision.runtime import load

    with load(toy_exports[BACKENDS[backend]].path, backend=backend) as model:
        value, words = _bad_inputs(model.inputs[0].shape)[case]
        with pytest.raises(InputMismatch, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
            model.predict(value)
        assert "\n" not in str(e.value)


def test_openvino_load_error_names_the_cause(toy_exports, tmp_path):
    """OpenVINO's messages open with 'Exception from src/...cpp:NN:' lines; the error keeps the cause."""
    from mobilevision.runtime import load

    res = toy_exports["openvino"]
    for f in res.files:
        shutil.copy2(f, tmp_path / f.name)
    xml = tmp_path / res.path.name
    xml.write_text(xml.read_text().replace("<layers>", "<layers><bogus", 1))   # not XML any more, no sidecar
    with pytest.raises(ArtifactError) as e:
        load(xml)
    message = str(e.value)
    assert "core.cpp" not in message and "Exception from" not in message, message
    assert len(message.split(": ", 2)[-1]) > 10, message


def test_openvino_error_cause_picks_the_reason():
    from mobilevision.runtime.backends.openvino import error_cause

    e = RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\n"
                     "Exception from src/frontends/ir/src/ir_deserializer.cpp:12:\n"
                     "Incorrect weights in bin file!\n")
    assert error_cause(e) == "Incorrect weights in bin file!"
    assert error_cause(RuntimeError("plain reason")) == "plain reason"
