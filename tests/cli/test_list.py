"""`mobilevision list`: the zoo table is declared (data/zoo.json), so listing needs neither torch nor the models;
a test recounts it so a changed model cannot leave a stale table."""
from __future__ import annotations

import subprocess
import sys

import pytest

import mobilevision
from mobilevision.cli import main
from mobilevision.zoo_table import count, counted, declared


def test_declared_rows_are_the_zoo_cards():
    rows = {r["name"]: r for r in declared()}
    zoo = [n for n in mobilevision.list_models() if not n.startswith("toy_")]
    assert sorted(rows) == sorted(zoo)
    for name in zoo:
        card = mobilevision.get_model_card(name)
        assert rows[name]["task"] == card.task and tuple(rows[name]["input"]) == card.input_size, name


@pytest.mark.slow
def test_declared_counts_are_what_the_code_counts():
    assert counted() == declared(), "a zoo model changed: run python -m mobilevision.zoo_table"


def test_list_prints_the_declared_table_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from mobilevision.cli import main\n"
            "rc = main(['list'])\n"
            "print('rc', rc, 'torch' in [m for m in sys.modules if sys.modules[m] is not None])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip().endswith("rc 0 False"), done.stdout + done.stderr
    emo = next(r for r in declared() if r["name"] == "emo_1m")
    assert "emo_1m" in done.stdout and f"{emo['macs'] / 1e6:.1f}" in done.stdout and "3x224x224" in done.stdout


def test_list_filters_by_task(capsys):
    assert main(["list", "--task", "isp"]) == 0
    printed = capsys.readouterr().out
    assert "efficientisp" in printed and "emo_1m" not in printed


def test_list_unknown_task_is_one_line(capsys, one_line_error):
    one_line_error(main(["list", "--task", "segment"]), "unknown task", "classify")


def test_list_counts_another_size_now(capsys):
    assert main(["list", "--task", "isp", "--imgsz", "64"]) == 0
    printed = capsys.readouterr().out
    params, macs = count("efficientisp", (4, 64, 64))
    assert "4x64x64" in printed and f"{macs / 1e6:.1f}" in printed
    assert macs < next(r["macs"] for r in declared() if r["name"] == "efficientisp")
