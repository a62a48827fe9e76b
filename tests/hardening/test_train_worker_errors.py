"""An error raised inside a DataLoader worker reaches the user as its own one line, not torch's wrapper."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mobilevision.errors import DataError
from mobilevision.train.engine import worker_cause

MESSAGE = "cannot read image x.png: image file is truncated (replace or remove the file)"


class _Broken(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        raise DataError(MESSAGE)


def test_worker_error_message_is_recovered():
    with pytest.raises(DataError) as e:
        next(iter(DataLoader(_Broken(), num_workers=1)))
    wrapped = str(e.value)
    assert "\n" in wrapped and wrapped.startswith("Caught DataError")   # what torch gives
    assert worker_cause(wrapped) == MESSAGE


def test_other_messages_are_left_alone():
    assert worker_cause(MESSAGE) is None
    assert worker_cause("Caught nothing here") is None


@pytest.mark.slow
def test_fit_reraises_the_workers_line(monkeypatch, tmp_path, toy_name, image_folder, one_line_error):
    """A training run whose worker hits an unreadable image ends in one line naming it."""
    from mobilevision.cli import main
    from mobilevision.data import transforms

    data = image_folder(tmp_path / "data")

    real = transforms.ClassificationDataset.__getitem__

    def broken(self, index):
        if torch.utils.data.get_worker_info() is not None:   # only inside a worker process
            raise DataError(MESSAGE)
        return real(self, index)

    monkeypatch.setattr(transforms.ClassificationDataset, "__getitem__", broken)
    rc = main(["train", "classify", "--model", toy_name, "--data", str(data), "--epochs", "1",
               "--batch-size", "2", "--workers", "1", "--out", str(tmp_path / "run")])
    one_line_error(rc, "x.png", "replace or remove")
