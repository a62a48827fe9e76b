"""`--device`: one vocabulary and one default for every command that runs PyTorch (train, eval, isp), and the
same word meaning the same thing in `bench` (gpu = a GPU)."""
from __future__ import annotations

import click
import pytest
import typer

from mobilevision.cli import app, main
from mobilevision.devices import resolve_torch_device, torch_device_name
from mobilevision.errors import MobileVisionError


@pytest.mark.parametrize("given, torch_name", [("auto", "auto"), ("cpu", "cpu"), ("CPU ", "cpu"), ("gpu", "cuda"),
                                               ("gpu:1", "cuda:1"), ("cuda", "cuda"), ("cuda:0", "cuda:0")])
def test_names(given, torch_name):
    assert torch_device_name(given) == torch_name


@pytest.mark.parametrize("given, words", [("npu", ("npu", "bench")), ("android:abc", ("android", "bench")),
                                          ("tpu", ("tpu", "auto", "gpu:N")), ("cpu:0", ("cpu:0",)),
                                          ("auto:1", ("auto:1",)), ("gpu:-1", ("gpu:-1",)), ("", ("''",))])
def test_bad_names_are_one_line(given, words):
    with pytest.raises(ValueError) as e:
        torch_device_name(given)
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


def test_resolve_on_this_machine():
    import torch

    assert resolve_torch_device("cpu") == torch.device("cpu")
    assert resolve_torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(MobileVisionError, match="sees no CUDA GPU"):
            resolve_torch_device("gpu")
    with pytest.raises(MobileVisionError, match="gpu:99"):
        resolve_torch_device("gpu:99")


def _torch_commands() -> dict[str, click.Command]:
    """Every command with a --device that runs PyTorch (all but bench and crosscheck)."""
    root = typer.main.get_command(app)
    found = {}

    def walk(cmd: click.Command, path: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())
        opts = [p for p in getattr(cmd, "params", []) if "--device" in getattr(p, "opts", [])]
        if opts and path not in ("bench", "crosscheck"):
            found[path] = opts[0]
    walk(root, "")
    return found


def test_every_torch_command_has_one_default_and_one_vocabulary():
    found = _torch_commands()
    assert {"isp", "train classify", "train anomaly", "eval classify", "eval anomaly", "eval landmarks"} <= set(found)
    assert {p.default for p in found.values()} == {"auto"}, {k: p.default for k, p in found.items()}
    assert len({p.help for p in found.values()}) == 1


@pytest.mark.parametrize("argv", [["eval", "classify", "--weights", "w.safetensors", "--device", "npu"],
                                  ["train", "anomaly", "--device", "tpu"]])
def test_cli_refuses_a_device_in_one_line(argv, one_line_error):
    one_line_error(main(argv), "--device")
