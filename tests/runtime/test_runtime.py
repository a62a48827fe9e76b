"""Torch-free runtime: loading, predict/classify, input checks, unreadable artifacts."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mobilevision.errors import ArtifactError, BackendUnavailable, InputMismatch
from mobilevision.export.metadata import ModelMetadata, sidecar_path
from mobilevision.runtime import load

NUMERIC = ("onnx", "tflite", "openvino")


@pytest.fixture(scope="module")
def reference(toy_exports, toy_name):
    """Torch logits of the exported toy model on one preprocessed image."""
    import torch

    from mobilevision import create_model
    from mobilevision.runtime.tasks.classify import preprocess

    md = toy_exports["onnx"].metadata
    image = np.random.default_rng(1).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    x = preprocess(image, md.preprocessing)
    torch.manual_seed(0)  # the exporter builds random-init zoo models after seeding 0
    model = create_model(toy_name)
    with torch.no_grad():
        return image, x, model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("target", NUMERIC)
def test_predict_matches_torch(toy_exports, reference, target):
    """Each artifact as its metadata describes it (TFLite: NHWC input, per-channel normalisation and softmax in the
    graph) computes the PyTorch model."""
    from mobilevision.export.interface import to_artifact_inputs, to_artifact_outputs

    _, x, logits = reference
    own = toy_exports["onnx"].metadata            # the model's own interface: NCHW, normalised, logits
    with load(toy_exports[target].path) as m:
        xin = to_artifact_inputs([x], own, m.metadata)[0]
        want = to_artifact_outputs([logits], own, m.metadata)[0]
        out = m.predict(xin)
        name = m.metadata.outputs[0].name
        assert list(out) == [name] and m.inputs[0].name == "image"
        assert name == ("probabilities" if m.metadata.scores == "probabilities" else "logits")
        np.testing.assert_allclose(out[name], want, atol=1e-4)
        assert m.predict({"image": xin})[name].shape == (1, 10)
        assert m.predict([xin])[name].shape == (1, 10)


@pytest.mark.parametrize("target", NUMERIC)
def test_classify_applies_recorded_preprocessing(toy_exports, reference, target):
    image, _, logits = reference
    with load(toy_exports[target].path) as m:
        top = m.classify(image, top_k=3)
    assert [c.index for c in top] == list(np.argsort(-logits[0])[:3])
    assert top[0].label == f"class_{top[0].index}"
    assert top[0].score >= top[1].score >= top[2].score and 0 < sum(c.score for c in top) <= 1


def test_classify_from_file_and_pil(toy_exports, reference, tmp_path):
    from PIL import Image

    image, _, _ = reference
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    with load(toy_exports["onnx"].path) as m:
        a, b, c = m.classify(image), m.classify(path), m.classify(Image.fromarray(image))
    assert [x.index for x in a] == [x.index for x in b] == [x.index for x in c]


@pytest.mark.parametrize("kind", ["shape", "dtype", "rank"])
@pytest.mark.parametrize("target", NUMERIC)
def test_wrong_input_is_one_line_error(toy_exports, target, kind):
    with load(toy_exports[target].path) as m, pytest.raises(InputMismatch) as info:
        shape = list(m.inputs[0].shape)          # NCHW, or NHWC for TFLite
        small = [d // 2 if d == 64 else d for d in shape]
        bad, words = {"shape": (np.zeros(small, np.float32), ["shape", str(shape), str(small)]),
                      "dtype": (np.zeros(shape, np.float64), ["dtype", "float32", "float64"]),
                      "rank": (np.zeros(shape[1:], np.float32), ["rank 4", "rank 3"])}[kind]
        m.predict(bad)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_wrong_input_count_and_names(toy_exports):
    x = np.zeros((1, 3, 64, 64), np.float32)
    with load(toy_exports["onnx"].path) as m:
        with pytest.raises(InputMismatch, match="takes 1 input"):
            m.predict([x, x])
        with pytest.raises(InputMismatch, match="missing input"):
            m.predict({"pixels": x})
        with pytest.raises(InputMismatch, match="uint8 HWC"):
            m.classify(np.zeros((64, 64), np.uint8))


def test_unreadable_artifacts(tmp_path):
    with pytest.raises(ArtifactError, match="not found"):
        load(tmp_path / "missing.onnx")
    with pytest.raises(ArtifactError, match="unknown artifact type"):
        load(tmp_path / "model.pb")
    for name in ("junk.onnx", "junk.tflite", "junk.xml"):
        (tmp_path / name).write_bytes(b"this is not a model")
        with pytest.raises(ArtifactError, match="cannot load"):
            load(tmp_path / name)


def test_backend_choice(toy_exports):
    with load(toy_exports["onnx"].path, backend="openvino") as m:
        assert m.backend.name == "openvino" and m.metadata.target == "onnx"
    with pytest.raises(BackendUnavailable, match="cannot open .tflite"):
        load(toy_exports["tflite"].path, backend="ort")
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        load(toy_exports["onnx"].path, backend="tensorrt")


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML predicts on macOS")
def test_coreml_needs_macos(toy_exports):
    with pytest.raises(BackendUnavailable, match="needs macOS"):
        load(toy_exports["coreml"].path)


def test_threads_option(toy_exports):
    for target in NUMERIC:
        with load(toy_exports[target].path, threads=1) as m:
            assert m.predict(np.zeros(m.inputs[0].shape, np.float32))[m.output_names[0]].shape == (1, 10)


def test_sidecar_used_when_nothing_embedded(toy_exports, tmp_path):
    import onnx

    proto = onnx.load(str(toy_exports["onnx"].path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with load(bare) as m:
        assert m.metadata is None
        with pytest.raises(ArtifactError, match="no mobilevision metadata"):
            m.classify(np.zeros((64, 64, 3), np.uint8))
    sidecar_path(bare).write_text(toy_exports["onnx"].sidecar.read_text())
    with pytest.raises(ArtifactError, match="another artifact"):   # its SHA-256 are of another file
        load(bare)
    hand_written = json.loads(toy_exports["onnx"].sidecar.read_text())
    del hand_written["files"]
    sidecar_path(bare).write_text(json.dumps(hand_written))
    with load(bare) as m:
        assert m.metadata.model == "toy_test_classifier" and len(m.classify(np.zeros((64, 64, 3), np.uint8))) == 5
        assert not m.integrity.verified


def test_metadata_schema_round_trip_and_versions(toy_exports):
    md = toy_exports["tflite"].metadata
    assert ModelMetadata.from_json(md.to_json()) == md
    newer = json.loads(md.to_json())
    newer["schema_version"] = 99
    with pytest.raises(ArtifactError, match="newer"):
        ModelMetadata.from_dict(newer)
    older_with_extra = json.loads(md.to_json())
    older_with_extra["future_field"] = 1
    assert ModelMetadata.from_dict(older_with_extra).model == md.model
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ModelMetadata.from_json("{nope")
    with pytest.raises(ArtifactError, match="malformed"):
        ModelMetadata.from_dict({"schema_version": 1, "task": "classify"})


BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, _NoTorch())
""")


def test_runtime_never_imports_torch(toy_exports):
    paths = [str(toy_exports[t].path) for t in NUMERIC] + [str(toy_exports["coreml"].path)]
    code = BLOCK_TORCH + textwrap.dedent(f"""
        import numpy as np
        from mobilevision.errors import BackendUnavailable
        from mobilevision.runtime import load
        for p in {paths[:3]!r}:
            with load(p) as m:   # each artifact's own input (TFLite: NHWC) and first output (TFLite: probabilities)
                out = m.predict(np.zeros(m.inputs[0].shape, np.float32))
                assert next(iter(out.values())).shape == (1, 10)
                assert len(m.classify(np.zeros((70, 90, 3), np.uint8), top_k=2)) == 2
        try:
            load({paths[3]!r})
        except BackendUnavailable:
            pass
        import mobilevision.runtime.profile
        assert "torch" not in sys.modules
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_openvino_models_released_out_of_order_keep_signal_handling_alive(toy_exports):
    """OpenVINO's CPU plugin, released out of order, leaves a freed alternate signal stack on the
    thread; the next Python signal handler (here SIGCHLD, as a torch DataLoader installs) then
    segfaulted. In a child process, so a regression is a failed test, not a dead test run."""
    xml = str(toy_exports["openvino"].path)
    code = textwrap.dedent(f"""
        import faulthandler, signal, subprocess
        import numpy as np
        from mobilevision.runtime import load
        faulthandler.enable()                    # Python's own alternate stack, as under pytest
        a, b = load({xml!r}, backend="openvino"), load({xml!r}, backend="openvino")
        a.close()
        del b                                    # dropped without close(): released by the GC
        signal.signal(signal.SIGCHLD, lambda *_: None)
        subprocess.run(["true"], check=True)     # the child's exit delivers SIGCHLD
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (proc.returncode, proc.stderr[-2000:])


def test_stretch_preprocessing_and_schema_1_files():
    from mobilevision.export.metadata import Preprocessing
    from mobilevision.runtime.tasks.classify import preprocess

    image = np.full((40, 80, 3), 255, np.uint8)
    image[:, :20] = 0                                      # the left quarter is black
    pre = Preprocessing(resize=32, crop=[32, 32], interpolation="bilinear", mean=[0, 0, 0], std=[1, 1, 1],
                        resize_mode="stretch")
    x = preprocess(image, pre)[0, 0]
    assert x.shape == (32, 32) and x[:, :7].max() < 0.01 and x[:, 9:].min() > 0.99   # whole width, squeezed
    cropped = preprocess(image, Preprocessing(**{**pre.__dict__, "resize_mode": "shorter_side"}))[0, 0]
    assert cropped.shape == (32, 32) and cropped[:, 2:].min() > 0.99   # the centre crop misses the black quarter
    old = ModelMetadata.from_dict({"schema_version": 1, "task": "classify", "model": "m", "target": "onnx",
                                   "precision": "fp32", "inputs": [], "outputs": [],
                                   "preprocessing": {"resize": 36, "crop": [32, 32]}})
    assert old.preprocessing.resize_mode == "shorter_side"
    with pytest.raises(InputMismatch, match="unknown resize_mode"):
        preprocess(image, Preprocessing(**{**pre.__dict__, "resize_mode": "zoom"}))
