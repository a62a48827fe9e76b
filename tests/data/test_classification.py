"""Dataset readers: image folders, CIFAR pickles, built-in digits; bad layouts fail clearly."""
from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest
import torch

from mobilevision.data import builtin_digits, open_classification_data
from mobilevision.data.transforms import ClassificationDataset, TrainAugment
from mobilevision.errors import DataError
from mobilevision.export.metadata import Preprocessing
from mobilevision.runtime.tasks.classify import preprocess

PRE = Preprocessing(resize=16, crop=[16, 16], interpolation="bilinear")


def test_image_folder_with_val(tmp_path, image_folder):
    data = open_classification_data(image_folder(tmp_path, ("b", "a", "c")))
    assert data.classes == ["a", "b", "c"]
    assert len(data.train) == len(data.val) == 12
    assert sorted(set(data.train.labels.tolist())) == [0, 1, 2]
    im = data.train.image(0)
    assert im.mode == "RGB" and im.size == (24, 20)


def test_flat_folder_is_split_per_class(tmp_path, image_folder):
    data = open_classification_data(image_folder(tmp_path, per_class=10, val=False))
    assert (len(data.train), len(data.val)) == (16, 4)
    assert np.bincount(data.val.labels).tolist() == [2, 2]
    again = open_classification_data(tmp_path)
    assert again.val.paths == data.val.paths  # the split is fixed


@pytest.mark.parametrize("layout, message", [
    ("empty_class", "has no images"),
    ("one_class", "needs at least 2 class folders"),
    ("no_classes", "no class folders"),
    ("missing", "dataset folder not found"),
    ("val_unknown_class", "has classes not in"),
])
def test_bad_layouts(tmp_path, image_folder, layout, message):
    root = tmp_path / "d"
    if layout == "empty_class":
        image_folder(root)
        (root / "train" / "empty").mkdir()
    elif layout == "one_class":
        image_folder(root, classes=("only",))
    elif layout == "no_classes":
        root.mkdir()
    elif layout == "val_unknown_class":
        image_folder(root)
        image_folder(root / "tmp", classes=("zebra",))
        os.rename(root / "tmp" / "train" / "zebra", root / "val" / "zebra")
    with pytest.raises(DataError, match=message):
        open_classification_data(root)


def test_corrupt_image_is_logged_and_skipped(tmp_path, image_folder, caplog):
    image_folder(tmp_path)
    bad = tmp_path / "train" / "cat" / "0.png"
    bad.write_bytes(b"\x89PNG not really")
    data = open_classification_data(tmp_path)
    ds = ClassificationDataset(data.train, PRE)
    with caplog.at_level(logging.WARNING, logger="mobilevision.data"):
        items = [ds[i] for i in range(len(ds))]
    assert len(items) == 8 and all(x.shape == (3, 16, 16) for x, _ in items)
    assert "skipped unreadable image" in caplog.text and "0.png" in caplog.text
    assert torch.equal(items[0][0], items[1][0])  # replaced by the next readable sample


def write_cifar(root, n_train=(6, 4), n_test=5, classes=10, hundred=False):
    rng = np.random.default_rng(1)
    key = "fine_labels" if hundred else "labels"

    def batch(n):
        return {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                key.encode(): rng.integers(0, classes, n).tolist()}

    root.mkdir(parents=True)
    names = [f"name{i}".encode() for i in range(classes)]
    if hundred:
        files = {"train": batch(sum(n_train)), "test": batch(n_test), "meta": {b"fine_label_names": names}}
    else:
        files = {f"data_batch_{i + 1}": batch(n) for i, n in enumerate(n_train)}
        files.update({"test_batch": batch(n_test), "batches.meta": {b"label_names": names}})
    for name, obj in files.items():
        with open(root / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    return files


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_python_layout(tmp_path, hundred):
    files = write_cifar(tmp_path / ("cifar-100-python" if hundred else "cifar-10-batches-py"),
                        classes=100 if hundred else 10, hundred=hundred)
    data = open_classification_data(tmp_path)  # the parent folder is found too
    assert len(data.train) == 10 and len(data.val) == 5 and data.default_imgsz == 32
    assert data.classes[:2] == ["name0", "name1"] and len(data.classes) == (100 if hundred else 10)
    first = files["train" if hundred else "data_batch_1"][b"data"][0]
    # CIFAR rows are 1024 R, then 1024 G, then 1024 B values
    assert np.array_equal(np.asarray(data.train.image(0)), first.reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar_pickle_with_code_is_refused(tmp_path):
    write_cifar(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "c" / "data_batch_2", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DataError, match="refusing to unpickle"):
        open_classification_data(tmp_path / "c")


def test_builtin_digits_split_is_fixed_and_real():
    data = builtin_digits()
    assert (len(data.train), len(data.val)) == (1437, 360) and data.classes == [str(i) for i in range(10)]
    assert np.bincount(data.val.labels).min() >= 35  # stratified
    im = np.asarray(data.train.image(0))
    assert im.shape == (8, 8, 3) and im.max() > 200 and (im[..., 0] == im[..., 2]).all()
    assert not data.flip_ok  # a mirrored digit is not the same digit


def test_eval_transform_is_the_runtime_preprocessing(tmp_path, image_folder):
    data = open_classification_data(image_folder(tmp_path))
    ds = ClassificationDataset(data.val, PRE)
    x, _ = ds[3]
    assert np.array_equal(x.numpy(), preprocess(data.val.image(3), PRE)[0])


def test_augmentation_is_reproducible_per_epoch_and_sample(tmp_path, image_folder):
    data = open_classification_data(image_folder(tmp_path, size=(40, 48)))
    ds = ClassificationDataset(data.train, PRE, TrainAugment(16), seed=3)
    first = ds[2][0]
    assert torch.equal(first, ds[2][0])
    ds.set_epoch(1)
    assert not torch.equal(first, ds[2][0])
    ds.set_epoch(0)
    assert torch.equal(first, ds[2][0])
    assert ClassificationDataset(data.train, PRE, TrainAugment(16), seed=4)[2][0].shape == (3, 16, 16)
