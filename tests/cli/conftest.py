"""Shared CLI-test checks."""
from __future__ import annotations

import pytest


@pytest.fixture
def one_line_error(capsys):
    """``check(rc, *words)``: the command exited 2 with exactly one ``error:`` line holding every
    word and no traceback; returns that line."""
    def check(rc: int, *words: str) -> str:
        captured = capsys.readouterr()
        lines = [l for l in captured.err.strip().splitlines() if l.startswith("error:")]
        assert rc == 2, captured
        assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
        assert all(w in lines[0] for w in words), lines[0]
        return lines[0]
    return check
