"""Batch prediction: `classify` / `anomaly` / `landmarks` over a folder or several files write one CSV / JSON row per
image (a bad image fails alone, in its row), and the Python API's `Model.predict_each` is the same as a generator."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from mobilevision.cli import main
from mobilevision.errors import MobileVisionError
from mobilevision.runtime.batch import expand_images, row_format, rows_text


def _images(folder, n=3, size=(40, 30), seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_expand_images_walks_folders_in_order_and_keeps_names_apart(tmp_path):
    _images(tmp_path / "shots" / "a", 2)
    _images(tmp_path / "shots" / "b", 2)
    (tmp_path / "shots" / "notes.txt").write_text("not an image")
    single = _images(tmp_path / "one", 1) / "0.png"
    found = expand_images([tmp_path / "shots", single])
    assert [name for _, name in found] == ["shots/a/0.png", "shots/a/1.png", "shots/b/0.png", "shots/b/1.png", "0.png"]
    with pytest.raises(MobileVisionError, match="missing.png not found"):
        expand_images([single, tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MobileVisionError, match="holds no images"):
        expand_images([tmp_path / "empty"])


def test_rows_text_formats():
    rows = [{"image": "a.png", "score": 0.5, "error": None}, {"image": "b.png", "error": "cannot read image"},
            {"image": "c.png", "score": float("nan"), "extra": 1, "error": None}]
    table = list(csv.DictReader(io.StringIO(rows_text(rows, ".csv"))))
    assert list(table[0]) == ["image", "score", "error", "extra"]
    assert [r["score"] for r in table] == ["0.5", "", ""] and table[1]["error"] == "cannot read image"
    assert json.loads(rows_text(rows, ".json"))[2]["score"] is None   # strict JSON: NaN is null
    assert [json.loads(line)["image"] for line in rows_text(rows, ".jsonl").splitlines()] == ["a.png", "b.png", "c.png"]
    with pytest.raises(MobileVisionError, match=".csv, .json, .jsonl"):
        row_format(__import__("pathlib").Path("rows.xlsx"))


@pytest.fixture
def folder_with_a_bad_image(tmp_path):
    folder = _images(tmp_path / "photos", 3)
    (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")   # a broken image among good ones
    return folder


def test_classify_a_folder_writes_a_row_per_image(toy_exports, folder_with_a_bad_image, tmp_path, capsys):
    from mobilevision.runtime import load

    art = str(toy_exports["onnx"].path)
    rows_file = tmp_path / "rows.csv"
    assert main(["classify", art, str(folder_with_a_bad_image), "--top-k", "2", "--out", str(rows_file)]) == 1
    err = capsys.readouterr().err
    assert "1 of 3 images failed" in err and "wrote 3 rows" in err
    rows = list(csv.DictReader(rows_file.open()))
    assert [r["image"] for r in rows] == ["photos/0.png", "photos/1.png", "photos/2.png"]
    assert rows[1]["error"] and not rows[1]["top1_label"] and "cannot read" in rows[1]["error"]
    with load(art) as m:
        for r in (rows[0], rows[2]):
            top = m.classify(folder_with_a_bad_image / r["image"].split("/")[1], top_k=2)
            assert (int(r["top1_index"]), r["top1_label"]) == (top[0].index, top[0].label)
            assert float(r["top2_score"]) == pytest.approx(top[1].score) and not r["error"]
    # several files, JSON; and CSV on stdout without --out
    good = [str(folder_with_a_bad_image / "0.png"), str(folder_with_a_bad_image / "2.png")]
    assert main(["classify", art, *good, "--out", str(tmp_path / "rows.json")]) == 0
    assert [r["image"] for r in json.loads((tmp_path / "rows.json").read_text())] == ["0.png", "2.png"]
    capsys.readouterr()
    assert main(["classify", art, *good]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("image,top1_index,top1_label,top1_score,") and len(printed.splitlines()) == 3


def test_bad_batch_requests_are_one_line_and_write_nothing(toy_exports, folder_with_a_bad_image, tmp_path,
                                                          one_line_error):
    art = str(toy_exports["onnx"].path)
    one_line_error(main(["classify", art, str(folder_with_a_bad_image), "--out", str(tmp_path / "rows.xlsx")]),
                   "rows.xlsx", ".csv")
    one_line_error(main(["classify", art, str(folder_with_a_bad_image), str(tmp_path / "nope")]), "nope", "not found")
    one_line_error(main(["anomaly", art, str(folder_with_a_bad_image)]), "'classify' model")
    assert not (tmp_path / "rows.xlsx").exists()


def test_predict_each_is_a_lazy_generator(toy_exports, folder_with_a_bad_image):
    from mobilevision.runtime import load

    pulled = []

    def images():
        for i in range(3):
            pulled.append(i)
            yield np.full((20, 20, 3), 40 * i, np.uint8) if i != 1 else np.zeros((20, 20), np.float32)

    with load(toy_exports["onnx"].path) as m:
        items = m.predict_each(images(), top_k=1)
        first = next(items)
        assert pulled == [0] and first.ok and first.source == "#0" and len(first.result) == 1
        rest = list(items)
        assert [i.ok for i in rest] == [False, True] and "uint8" in rest[0].error
        by_path = list(m.predict_each([folder_with_a_bad_image / "0.png", folder_with_a_bad_image / "1.png"]))
        assert by_path[0].ok and not by_path[1].ok and by_path[1].source.endswith("1.png")
        with pytest.raises(MobileVisionError, match="'classify' model.*threshold"):
            next(m.predict_each([folder_with_a_bad_image / "0.png"], threshold=0.1))


@pytest.mark.slow
def test_anomaly_folder_rows_use_the_artifacts_threshold_and_draw_readable_overlays(shared_exports, tmp_path, capsys):
    from mobilevision.runtime import load
    from mobilevision.runtime.tasks.anomaly import heatmap, overlay

    art = shared_exports("efficientad")["onnx"].path
    folder = _images(tmp_path / "parts", 2, size=(64, 48))
    assert main(["anomaly", str(art), str(folder), "--out", str(tmp_path / "rows.jsonl"),
                 "--overlays", str(tmp_path / "heat")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    with load(art) as m:
        r = m.detect_anomaly(folder / "0.png")
        own = m.metadata.anomaly.image
    assert rows[0]["score"] == pytest.approx(r.score) and rows[0]["threshold"] == own
    assert rows[0]["is_anomalous"] == (r.score > own) and isinstance(rows[0]["anomalous_pixels"], int)
    drawn = np.asarray(Image.open(tmp_path / "heat" / "parts" / "0.png"))
    np.testing.assert_array_equal(drawn[:48, :64], overlay(np.asarray(Image.open(folder / "0.png")),
                                                            heatmap(r.anomaly_map)))
    assert drawn.shape[0] > 48 and rows[0]["overlay"].endswith("0.png")


@pytest.mark.slow
def test_landmarks_files_give_points_rows_and_overlays_with_the_box(shared_exports, tmp_path):
    from mobilevision.runtime import load

    art = shared_exports("landmarks_64")["onnx"].path
    folder = _images(tmp_path / "faces", 2, size=(80, 80))
    files = [str(folder / "0.png"), str(folder / "1.png")]
    assert main(["landmarks", str(art), *files, "--box", "10,10,70,70", "--out", str(tmp_path / "pts.csv"),
                 "--overlays", str(tmp_path / "ov")]) == 0
    rows = list(csv.DictReader((tmp_path / "pts.csv").open()))
    with load(art) as m:
        points = m.detect_landmarks(folder / "1.png", box=[10, 10, 70, 70])
    assert float(rows[1][f"x{len(points) - 1}"]) == pytest.approx(points[-1][0])
    drawn = np.asarray(Image.open(tmp_path / "ov" / "1.png"))
    assert (drawn[10, 20:60] == (255, 220, 0)).all()   # the face box's top edge, in yellow
