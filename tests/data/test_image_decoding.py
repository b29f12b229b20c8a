"""Every image mode a data set may hold decodes to the RGB values computed by hand, or is refused by name."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data.images import read_rgb
from wsss.data.scan import image_problem
from wsss.data.voc import VOCDataset


def save(tmp_path: Path, img: Image.Image, name: str) -> Path:
    path = tmp_path / name
    img.save(path)
    return path


def grey(rgb: np.ndarray) -> np.ndarray:
    """The one grey level of each pixel of a grey image read as RGB (the three channels must agree)."""
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    # v -> round(v / 257): 0, 128 (0.498) -> 0; 129 (0.502), 257 -> 1; 32896 = 128 * 257 -> 128; 65535 -> 255
    values = np.array([[0, 128, 129, 257, 32896, 65535]], np.uint16)
    path = save(tmp_path, Image.fromarray(values), "g16.png")
    assert Image.open(path).mode == "I;16"
    assert grey(read_rgb(path)).tolist() == [[0, 0, 1, 1, 128, 255]]


def test_palette_image_looks_up_its_colours(tmp_path):
    img = Image.fromarray(np.array([[0, 1, 2]], np.uint8), mode="P")
    img.putpalette([10, 20, 30, 200, 100, 0, 1, 2, 3] + [0] * (256 * 3 - 9))
    rgb = read_rgb(save(tmp_path, img, "p.png"))
    assert rgb.tolist() == [[[10, 20, 30], [200, 100, 0], [1, 2, 3]]]


@pytest.mark.parametrize("mode, pixel, expected", [
    ("L", 77, [77, 77, 77]),
    ("LA", (77, 0), [77, 77, 77]),                 # alpha dropped, the stored grey kept
    ("RGBA", (10, 20, 30, 0), [10, 20, 30]),
    ("1", 1, [255, 255, 255]),
])
def test_grey_alpha_and_bilevel_images(tmp_path, mode, pixel, expected):
    rgb = read_rgb(save(tmp_path, Image.new(mode, (2, 1), pixel), f"{mode}.png"))
    assert rgb.shape == (1, 2, 3) and rgb[0, 0].tolist() == expected and rgb[0, 1].tolist() == expected


def test_cmyk_jpeg(tmp_path):
    # R = (255 - K)(255 - C) / 255 = 204; G = 204 * (255 - 128) / 255 = 101.6; B = 204 * 0 / 255 = 0.
    path = save(tmp_path, Image.new("CMYK", (8, 8), (0, 128, 255, 51)), "cmyk.jpg")
    assert Image.open(path).mode == "CMYK"
    rgb = read_rgb(path).astype(int)
    assert np.abs(rgb - [204, 102, 0]).max() <= 3   # JPEG is lossy: a few levels


@pytest.mark.parametrize("mode, value", [("F", 0.5), ("I", 70000)])
def test_float_and_32_bit_images_are_refused_by_name(tmp_path, mode, value):
    path = save(tmp_path, Image.new(mode, (2, 2), value), f"{mode}.tif")
    with pytest.raises(ValueError, match=rf"{mode}.tif: image mode '{mode}' \(TIFF\) is not supported"):
        read_rgb(path)
    problem, size = image_problem(path)  # the scan refuses it before any run reads it
    assert problem.startswith(f"{path}: image mode '{mode}'") and size is None


def test_voc_loader_reads_a_sixteen_bit_image(tmp_path):
    root = tmp_path / "VOC"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    save(root / "JPEGImages", Image.fromarray(np.full((3, 4), 65535 // 2, np.uint16)), "a.png")
    image = VOCDataset(root, "val", masks="none").load_image("a")
    assert image.shape == (3, 4, 3) and (image == 127).all()  # 32767 / 257 = 127.498
