"""RunCard: the typed, versioned card a training run writes beside its weights (JSON round trip, the
version 1 migration, refusal of newer versions and of damaged fields)."""
from __future__ import annotations

import json

import pytest

import mobilevision
from mobilevision import registry
from mobilevision.checkpoints import read_run_card
from mobilevision.cli import main
from mobilevision.errors import WeightsError
from mobilevision.run_card import CHECKPOINT_FORMAT, RUN_FORMAT, VERSION, RunCard, read_run_card_file


def _classifier() -> RunCard:
    return RunCard(task="classify", model="toy_test_classifier", input_size=(3, 32, 32), num_classes=3,
                   labels=("ant", "bee", "cow"), label_set="custom", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                   interpolation="bilinear", crop_pct=1.0, data="/data/insects", task_options={"data": "/data/insects"},
                   epoch=2, metrics={"epoch": 2, "val_top1": 0.75}, ema=True, world_size=1,
                   train_config={"epochs": 2, "seed": 0}, extras={"train_images": 24})


def _v1_landmarks(**changes) -> dict:
    """A best.json as mobilevision wrote it before RunCard: the point count in num_classes."""
    return {"format": CHECKPOINT_FORMAT, "version": 1, "task": "landmarks", "model": "landmarks_mnv2_035",
            "role": "teacher-tough", "num_classes": 68, "labels": None, "label_set": None,
            "input_size": [3, 64, 64], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "data": "faces",
            "train_faces": 9, "loss": "mse", "epoch": 1, "metrics": {"epoch": 1, "val_nme": 12.5}, "ema": False,
            "world_size": 1, "train": {"epochs": 1}, "task_options": {"data": "faces"}, **changes}


def _write(tmp_path, card: dict, name: str = "best") -> str:
    (tmp_path / f"{name}.json").write_text(json.dumps(card))
    weights = tmp_path / f"{name}.safetensors"
    weights.write_bytes(b"")
    return str(weights)


@pytest.mark.parametrize("card", [
    _classifier(),
    RunCard(task="landmarks", model="landmarks_mnv2_035", input_size=(3, 64, 64), points=98, role="student",
            extras={"kd_from": {"teacher-tough": {"weights": "t.safetensors", "sha256": "0" * 64}}, "loss": "kd"}),
    RunCard(task="isp", model="efficientisp", input_size=(4, 128, 128), raw_black_level=(64.0,) * 4,
            raw_white_level=1023.0, raw_clip=False, state="finished", epochs_done=3,
            updated="2025-01-01T00:00:00+00:00", extras={"mode": "paired"}),
], ids=["classify", "landmarks", "isp"])
def test_round_trip_through_json(card, tmp_path):
    d = json.loads(card.to_json())
    assert d["format"] == CHECKPOINT_FORMAT and d["version"] == VERSION == 2
    back = RunCard.from_dict(d, "best.json")
    assert back == card
    assert read_run_card(_write(tmp_path, d)) == card      # and through the file beside the weights


def test_json_keeps_the_version_1_keys_flat():
    """Tools that read best.json directly keep working: common fields, the recipe under "train" and the
    task's own facts at the top level."""
    d = _classifier().to_dict()
    assert d["num_classes"] == 3 and d["labels"] == ["ant", "bee", "cow"] and d["input_size"] == [3, 32, 32]
    assert d["train"] == {"epochs": 2, "seed": 0} and d["train_images"] == 24 and "extras" not in d
    landmark = RunCard(task="landmarks", model="m", input_size=(3, 8, 8), points=5).to_dict()
    assert landmark["points"] == 5 and landmark["num_classes"] is None
    assert RunCard.from_dict(_classifier().to_dict(RUN_FORMAT), "run.json") == _classifier()


def test_version_1_landmark_card_migrates_points_out_of_num_classes(tmp_path):
    card = read_run_card(_write(tmp_path, _v1_landmarks()))
    assert card.points == 68 and card.num_classes is None
    assert card.role == "teacher-tough" and card.extras == {"train_faces": 9, "loss": "mse"}
    assert card.train_config == {"epochs": 1} and card.metrics["val_nme"] == 12.5
    # the model is still built with 68 points (the builder's head size)
    assert registry.card_of_trained(mobilevision.get_model_card("landmarks_mnv2_035"), card).num_classes == 68
    # a version 1 card that also wrote "points" (the same count) reads the same
    assert RunCard.from_dict(_v1_landmarks(points=68), "best.json") == card


def test_version_1_cards_of_other_tasks():
    anomaly = RunCard.from_dict({"format": CHECKPOINT_FORMAT, "version": 1, "task": "anomaly",
                                 "model": "efficientad_s", "num_classes": 0, "input_size": [3, 64, 64],
                                 "labels": None, "label_set": None, "train_images": 9}, "best.json")
    assert anomaly.num_classes is None and anomaly.points is None and anomaly.extras == {"train_images": 9}
    assert registry.card_of_trained(mobilevision.get_model_card("efficientad_s"), anomaly).num_classes == 0
    classify = RunCard.from_dict({**_classifier().to_dict(), "version": 1}, "best.json")
    assert classify.num_classes == 3 and classify.points is None


def test_newer_version_is_refused_with_the_upgrade_line(tmp_path, one_line_error):
    weights = _write(tmp_path, {**_classifier().to_dict(), "version": 99})
    with pytest.raises(WeightsError, match="version 99, written by a newer mobilevision: upgrade"):
        read_run_card(weights)
    one_line_error(main(["export", weights, "-t", "onnx"]), "best.json",
                   "newer mobilevision", "upgrade")


@pytest.mark.parametrize("field,value,words", [
    ("num_classes", "3", ("num_classes", "not an integer")),
    ("num_classes", 0, ("num_classes", "outside")),
    ("input_size", [3, 32], ("input_size", "2 items")),
    ("input_size", [3, 32, -1], ("input_size[2]", "outside")),
    ("labels", "ant", ("labels", "not a list")),
    ("labels", ["ant", 7, "cow"], ("labels[1]", "not a string")),
    ("std", [0.5, 0.0, 0.5], ("std[1]", "> 0")),
    ("mean", [0.5, None, 0.5], ("mean[1]", "not a finite number")),
    ("crop_pct", True, ("crop_pct", "not a finite number")),
    ("raw_clip", "no", ("raw_clip", "not true or false")),
    ("task_options", [], ("task_options", "not an object")),
    ("metrics", {"val_top1": "high"}, ("metrics", "not a number")),
    ("epoch", 1.5, ("epoch", "not an integer")),
    ("state", "paused", ("state", "expected one of")),
    ("model", "x" * 5000, ("model", "characters long")),
    ("version", "2", ("version", "not an integer")),
])
def test_a_damaged_field_is_refused_in_one_line(field, value, words, tmp_path):
    weights = _write(tmp_path, {**_classifier().to_dict(), field: value})
    with pytest.raises(WeightsError) as e:
        read_run_card(weights)
    message = str(e.value)
    assert "\n" not in message and "best.json" in message and all(w in message for w in words), message


def test_counts_must_fit_the_task():
    with pytest.raises(WeightsError, match="num_classes is missing"):
        RunCard.from_dict({**_classifier().to_dict(), "num_classes": None}, "best.json")
    with pytest.raises(WeightsError, match="only classifier cards have classes"):
        RunCard.from_dict({**_v1_landmarks(), "version": 2, "points": 68}, "best.json")
    with pytest.raises(WeightsError, match="points is 5 but num_classes"):
        RunCard.from_dict(_v1_landmarks(points=5), "best.json")
    with pytest.raises(WeightsError, match="labels has 3 names for num_classes 2"):
        RunCard.from_dict({**_classifier().to_dict(), "num_classes": 2}, "best.json")


def test_missing_fields_and_unreadable_files(tmp_path):
    d = _classifier().to_dict()
    del d["input_size"]
    with pytest.raises(WeightsError, match="lacks input_size: it was edited or truncated"):
        read_run_card(_write(tmp_path, d))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match="cannot read the run card"):
        read_run_card(tmp_path / "bad.safetensors")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(WeightsError, match="deep.json"):
        read_run_card_file(tmp_path / "deep.json")


def test_none_for_what_is_not_a_checkpoint_card(tmp_path):
    assert read_run_card(tmp_path / "plain.safetensors") is None                        # no JSON beside it
    assert read_run_card(_write(tmp_path, {"format": "something-else"})) is None        # another tool's JSON
    assert read_run_card(_write(tmp_path, _classifier().to_dict(RUN_FORMAT), "run")) is None  # run.json's format
    assert read_run_card_file(tmp_path / "run.json") == _classifier()
    assert read_run_card("https://example.com/best.safetensors") is None


def test_extras_cannot_shadow_fields():
    with pytest.raises(ValueError, match="shadow"):
        RunCard(task="classify", model="m", input_size=(3, 8, 8), num_classes=2, extras={"train": {}})


def test_module_is_torch_free():
    import subprocess
    import sys

    code = "import sys, mobilevision.run_card; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
