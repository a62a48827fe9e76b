"""Runtime chatter stays off the user's terminal: LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for
CPU." from C++ on every load; only --debug (MOBILEVISION_DEBUG) shows it. Anything else written meanwhile, by native
code or by another thread, still reaches stderr."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from mobilevision.errors import DEBUG_ENV
from mobilevision.runtime.backends.litert import quiet_native

CHATTER = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"


def test_load_chatter_is_dropped_and_the_rest_kept(capfd, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with quiet_native():
        os.write(2, CHATTER + b"ERROR: something real\n")
    err = capfd.readouterr().err
    assert "Created TensorFlow Lite" not in err and "ERROR: something real" in err


def test_debug_shows_the_chatter(capfd, monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "1")
    with quiet_native():
        os.write(2, CHATTER)
    assert "Created TensorFlow Lite XNNPACK delegate" in capfd.readouterr().err


def test_four_threads_lose_nothing_and_restore_stderr(capfd, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)

    def load(i):
        for j in range(20):
            with quiet_native():
                os.write(2, CHATTER + f"thread {i} line {j}\n".encode())

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.write(2, b"after\n")
    err = capfd.readouterr().err.splitlines()
    assert sorted(l for l in err if l.startswith("thread")) == sorted(f"thread {i} line {j}" for i in range(4)
                                                                     for j in range(20))
    assert "Created TensorFlow Lite XNNPACK delegate for CPU." not in err and err[-1] == "after"


@pytest.mark.parametrize("debug", [False, True])
def test_classify_on_a_tflite_prints_no_runtime_chatter(toy_exports, tmp_path, debug):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (120, 60, 30)).save(image)
    argv = ["--debug"] if debug else []
    argv += ["classify", str(toy_exports["tflite"].path), str(image)]
    code = f"from mobilevision.cli import main; raise SystemExit(main({argv!r}))"
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert ("Created TensorFlow Lite XNNPACK delegate" in done.stderr) == debug, done.stderr
    assert "score" in done.stdout
