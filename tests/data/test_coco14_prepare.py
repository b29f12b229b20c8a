"""`python -m wsss.data.prepare coco14`: the WSSS benchmark's index masks and id lists from the instances
JSON.

The masks are checked against masks computed here without pycocotools: polygons rasterised at the pixel
centres (even-odd rule), COCO's compressed RLE strings and uncompressed crowd RLE decoded by hand, painted in
the JSON's order with class = 1 + position of the category among the sorted ids.
"""
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.coco_layout import DRAWN, EMPTY, make_coco_download
from wsss.data.prepare import coco14


@pytest.fixture(scope="module")
def prepared(module_tmp):
    base = module_tmp("coco")
    raw = make_coco_download(base / "download")
    root = base / "coco14"
    report = coco14.prepare(root, {s: raw / s for s in coco14.SPLITS}, [raw / "annotations"], check=False)
    return raw, root, report


# -- an independent reading of the annotations -----------------------------------------------------------
def inside_polygon(polygon: list[float], h: int, w: int) -> np.ndarray:
    """Even-odd test of every pixel centre against the polygon's edges."""
    xs, ys = np.asarray(polygon[0::2]), np.asarray(polygon[1::2])
    py, px = np.mgrid[0:h, 0:w] + 0.5
    inside = np.zeros((h, w), bool)
    for i in range(len(xs)):
        x0, y0, x1, y1 = xs[i], ys[i], xs[i - 1], ys[i - 1]
        if y0 == y1:
            continue
        crosses = (py >= min(y0, y1)) & (py < max(y0, y1))
        x_at = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < x_at)
    return inside


def decode_counts_string(s: str) -> list[int]:
    """COCO's compressed RLE: 5-bit groups (offset 48, 0x20 = more, 0x10 = sign), counts after the second
    stored as differences to the count two before."""
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def runs_to_mask(counts: list[int], h: int, w: int) -> np.ndarray:
    values = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool)
    assert values.size == h * w
    return values.reshape(w, h).T   # column-major


def region(segmentation, h: int, w: int) -> np.ndarray:
    if isinstance(segmentation, list):
        out = np.zeros((h, w), bool)
        for polygon in segmentation:
            out |= inside_polygon(polygon, h, w)
        return out
    counts = segmentation["counts"]
    return runs_to_mask(decode_counts_string(counts) if isinstance(counts, str) else counts, h, w)


def expected_masks(raw: Path, split: str, crowd: str = "class") -> dict[int, np.ndarray]:
    data = json.loads((raw / "annotations" / f"instances_{split}.json").read_text())
    value = {cid: k + 1 for k, cid in enumerate(sorted(c["id"] for c in data["categories"]))}
    masks = {im["id"]: np.zeros((im["height"], im["width"]), np.uint8) for im in data["images"]}
    for ann in data["annotations"]:
        m = masks[ann["image_id"]]
        m[region(ann["segmentation"], *m.shape)] = 255 if ann["iscrowd"] and crowd == "ignore" else \
            value[ann["category_id"]]
    return masks


def read_mask(root: Path, image_id: int) -> np.ndarray:
    return np.asarray(Image.open(root / "coco_seg_anno" / f"{image_id:012d}.png"))


# -- tests ------------------------------------------------------------------------------------------------
def test_masks_match_an_independent_rasterisation(prepared):
    raw, root, _ = prepared
    counts = np.zeros(256, np.int64)
    for split in coco14.SPLITS:
        for image_id, expected in expected_masks(raw, split).items():
            got = read_mask(root, image_id)
            assert got.shape == expected.shape and np.array_equal(got, expected), (split, image_id)
            counts += np.bincount(got.ravel(), minlength=256)
    # the drawn categories' values (1 + position among the 80 sorted ids): person 1, dog 17, bottle 40,
    # chair 57, toothbrush 80 — and nothing else
    assert set(np.flatnonzero(counts)) == {0, 1, 17, 40, 57, 80}
    assert all(counts[v] > 100 for v in (1, 17, 40, 57, 80))


def test_fixture_covers_polygons_rle_crowd_overlaps_and_empty_images(prepared):
    raw, _, _ = prepared
    anns = [a for s in coco14.SPLITS for a in
            json.loads((raw / "annotations" / f"instances_{s}.json").read_text())["annotations"]]
    def kind(a):
        seg = a["segmentation"]
        if isinstance(seg, list):
            return "polygon"
        return "rle" if isinstance(seg["counts"], str) else "uncompressed"

    kinds = {(kind(a), a["iscrowd"]) for a in anns}
    assert kinds == {("polygon", 0), ("rle", 0), ("uncompressed", 1)}
    overlapping = 0
    for s in coco14.SPLITS:
        data = json.loads((raw / "annotations" / f"instances_{s}.json").read_text())
        sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
        cover = {i: np.zeros(hw, int) for i, hw in sizes.items()}
        for a in data["annotations"]:
            cover[a["image_id"]] += region(a["segmentation"], *sizes[a["image_id"]])
        overlapping += sum(int((c > 1).sum()) for c in cover.values())
    assert overlapping > 0


def test_crowd_regions_can_be_ignored(prepared, tmp_path):
    raw, root, _ = prepared
    other = tmp_path / "coco14"
    images = {s: raw / s for s in coco14.SPLITS}
    coco14.prepare(other, images, [raw / "annotations"], crowd="ignore", check=False)
    ignored = 0
    for split in coco14.SPLITS:
        for image_id, expected in expected_masks(raw, split, crowd="ignore").items():
            got = read_mask(other, image_id)
            assert np.array_equal(got, expected), image_id
            ignored += int((got == 255).sum())
    assert ignored > 0
    with pytest.raises(coco14.PrepareError, match="crowd='ignore'"):   # one convention per mask folder
        coco14.prepare(other, images, [raw / "annotations"], check=False)


def test_id_lists_hold_the_annotated_images_and_empty_images_get_background(prepared):
    raw, root, report = prepared
    for split in coco14.SPLITS:
        data = json.loads((raw / "annotations" / f"instances_{split}.json").read_text())
        annotated = sorted({a["image_id"] for a in data["annotations"]})
        listed = (root / f"{split}.txt").read_text().split()
        assert listed == [f"{i:012d}" for i in annotated]
        empty = [im["id"] for im in data["images"] if im["id"] not in annotated]
        assert len(empty) == EMPTY[split] and all(not read_mask(root, i).any() for i in empty)
        assert report[split] == {"images": len(data["images"]), "listed": len(annotated),
                                 "masks_written": len(data["images"])}


def test_the_data_set_reads_the_prepared_tree(prepared):
    from wsss.data.coco import COCODataset

    _, root, _ = prepared
    ds = COCODataset(root, "val2014", masks="coco_seg_anno", ids_file="{split}.txt")
    assert len(ds.ids) == len((root / "val2014.txt").read_text().split())
    for image_id in ds.ids:
        present = set(np.unique(ds.load_mask(image_id))) - {0, 255}
        assert present == {int(c) + 1 for c in np.flatnonzero(ds.label(image_id))}
        assert ds.image_path(image_id).is_file()
    assert {ds.classes[v - 1] for v in (1, 80)} == {"person", "toothbrush"} and len(DRAWN) == 5


def test_archives_are_extracted_and_a_rerun_writes_nothing(prepared, tmp_path):
    raw, root, _ = prepared
    zips = {}
    for split in coco14.SPLITS:   # not the official names: no checksum to compare
        zips[split] = tmp_path / f"{split}-small.zip"
        with zipfile.ZipFile(zips[split], "w") as z:
            for f in sorted((raw / split).iterdir()):
                z.write(f, f"{split}/{f.name}")
    annotations = tmp_path / "annotations-small.zip"
    with zipfile.ZipFile(annotations, "w") as z:
        for f in sorted((raw / "annotations").iterdir()):
            z.write(f, f"annotations/{f.name}")
    out = tmp_path / "from_zips"
    coco14.prepare(out, zips, [annotations])
    for split in coco14.SPLITS:
        names = sorted(p.name for p in (raw / split).iterdir())
        assert sorted(p.name for p in (out / split).iterdir()) == names
    assert sorted(p.name for p in (out / "coco_seg_anno").iterdir()) == \
        sorted(p.name for p in (root / "coco_seg_anno").iterdir())
    again = coco14.prepare(out, zips, [annotations])
    assert all(r["masks_written"] == 0 for r in again.values())


def test_missing_inputs_print_the_official_urls_and_checksums(tmp_path, capsys):
    from wsss.data.prepare.__main__ import main

    assert main(["coco14", "--out", str(tmp_path / "coco14")]) == 2
    err = capsys.readouterr().err
    for url, md5, _ in coco14.ARCHIVES.values():
        assert url in err and md5 in err


def test_a_damaged_official_archive_is_refused_by_its_md5(tmp_path, capsys):
    from wsss.data.prepare.__main__ import main

    fake = tmp_path / "train2014.zip"
    fake.write_bytes(b"not the archive")
    code = main(["coco14", "--train-images", str(fake), "--val-images", str(tmp_path), "--annotations",
                 str(tmp_path), "--out", str(tmp_path / "coco14")])
    err = capsys.readouterr().err
    assert code == 1 and str(fake) in err and coco14.ARCHIVES["train2014.zip"][1] in err
