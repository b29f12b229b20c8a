"""`xai/figure.png`: sample images × methods as one grid of overlays (the stage picks images and maps)."""
from __future__ import annotations

import numpy as np
import torch

from wsss.xai.report import DISPLAY_NAMES


def display_image(image: torch.Tensor, mean, std) -> np.ndarray:
    """A normalised (c, H, W) tensor back to (H, W, 3) uint8 (first three channels)."""
    x = image[:3].float().cpu().permute(1, 2, 0).numpy()
    x = x * np.asarray(std[:3], np.float32) + np.asarray(mean[:3], np.float32)
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def figure_png(images: list[np.ndarray], row_titles: list[str], maps: dict[str, np.ndarray],
               alpha: float = 0.5, panel_inches: float = 1.8) -> bytes:
    """Grid: one row per image (image, then one overlay per method), method names as column titles.

    maps: method -> (N, H, W) in [0, 1], the map of each row's label.
    """
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from wsss.logging_utils import blend, heat_colours

    names = list(maps)
    rows, cols = len(images), 1 + len(names)
    fig = Figure(figsize=(panel_inches * cols, panel_inches * rows + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, image in enumerate(images):
        axes[r][0].imshow(image)
        axes[r][0].set_ylabel(row_titles[r], fontsize=8)
        for c, name in enumerate(names, start=1):
            axes[r][c].imshow(blend(image, heat_colours(maps[name][r]), alpha))
            if r == 0:
                axes[r][c].set_title(DISPLAY_NAMES.get(name, name), fontsize=9)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_title("image", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
