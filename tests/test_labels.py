"""ImageNet-1k class names: shipped with the package, attached to every 1000-class ImageNet card."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from importlib import resources

import pytest

import mobilevision
from mobilevision import registry

# Well-known indices of the ILSVRC-2012 class order (first WordNet lemma of each synset).
KNOWN = {0: "tench", 1: "goldfish", 207: "golden retriever", 281: "tabby", 409: "analog clock",
         950: "orange", 999: "toilet tissue"}


def _file_names() -> list[str]:
    text = resources.files("mobilevision").joinpath("data/imagenet1k_labels.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_file_has_1000_unique_clean_names():
    names = _file_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert all(n and n == n.strip() and n.isprintable() and len(n) <= 1024 for n in names)


@pytest.mark.parametrize("index", sorted(KNOWN), ids=[f"{i}-{KNOWN[i]}" for i in sorted(KNOWN)])
def test_known_index(index):
    assert registry.imagenet1k_labels()[index] == KNOWN[index]


@pytest.mark.parametrize("index,name", [(134, "crane (bird)"), (517, "crane (machine)"), (638, "maillot"),
                                        (639, "tank suit")], ids=["134-crane-bird", "517-crane-machine",
                                                                  "638-maillot", "639-tank-suit"])
def test_shared_lemmas_are_told_apart(index, name):
    assert registry.imagenet1k_labels()[index] == name


def test_names_load_without_torch():
    code = ("import sys; from mobilevision.registry import imagenet1k_labels; "
            "print(len(imagenet1k_labels()), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["1000", "False"], out.stderr


@pytest.mark.parametrize("name", ["emo_1m", "wide_resnet101_2"])
def test_zoo_imagenet_cards_carry_names(name):
    card = mobilevision.get_model_card(name)
    assert card.label_set == "imagenet-1k" and card.num_classes == 1000
    assert card.labels == registry.imagenet1k_labels()


@pytest.mark.parametrize("changes", [dict(num_classes=10), dict(num_classes=1000, label_set="toy"),
                                     dict(num_classes=1000, label_set=None),
                                     dict(num_classes=1000, labels=tuple(f"c{i}" for i in range(1000)))],
                         ids=["10-classes", "other-label-set", "no-label-set", "own-labels"])
def test_other_cards_keep_their_labels(changes):
    card = registry.ModelCard(name="x", task="classify", input_size=(3, 32, 32), **changes)
    assert card.labels == changes.get("labels")


def test_replaced_card_with_other_class_count_has_no_imagenet_names():
    card = dataclasses.replace(mobilevision.get_model_card("emo_1m"), num_classes=10, labels=None)
    assert card.labels is None


def test_finetuned_head_drops_names():
    assert mobilevision.create_model("emo_1m", num_classes=10).model_card.labels is None


def test_trained_run_card_unaffected():
    from mobilevision.run_card import RunCard

    run = RunCard(task="classify", model="emo_1m", num_classes=1000, input_size=(3, 64, 64), labels=None,
                  label_set="imagenet-1k")
    assert registry.card_of_trained(mobilevision.get_model_card("emo_1m"), run).labels is None
    run = RunCard(task="classify", model="emo_1m", num_classes=3, input_size=(3, 64, 64), labels=("a", "b", "c"),
                  label_set="mine")
    assert registry.card_of_trained(mobilevision.get_model_card("emo_1m"), run).labels == ("a", "b", "c")


def test_export_metadata_carries_names():
    from mobilevision.export import metadata
    from mobilevision.export.api import prepare
    from mobilevision.runtime.tasks.classify import top_k

    md = prepare("emo_1m", imgsz=64).base
    assert md.labels == list(registry.imagenet1k_labels()) and md.label_set == "imagenet-1k"
    back = metadata.ModelMetadata.from_json(md.to_json())   # validated on read: sizes, types, control chars
    assert back.labels[207] == "golden retriever"
    logits = [0.0] * 1000
    logits[409] = 9.0
    assert top_k(logits, 1, back.labels)[0].label == "analog clock"


def test_synset_folders_match_the_imagenet_names():
    """ImageNet folders are synset ids in class order: evaluation and int8 calibration accept them."""
    from mobilevision.registry import imagenet1k_labels, same_classes

    names = imagenet1k_labels()
    synsets = [f"n{i:08d}" for i in range(1000)]
    assert same_classes(names, "imagenet-1k", synsets)
    assert not same_classes(names, None, synsets)
    assert not same_classes(("cat", "dog"), None, ["dog", "cat"])
    assert same_classes(("cat", "dog"), None, ["cat", "dog"])
