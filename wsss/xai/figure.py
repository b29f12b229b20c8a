"""`xai/figure.png`: sample images × methods, the map of each image's first evaluated label overlaid."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from wsss.data.datasets import TransformedSplit
from wsss.xai.methods.base import resize_maps
from wsss.xai.report import DISPLAY_NAMES

if TYPE_CHECKING:
    from wsss.stages.xai import XAIStage


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


def sample_figure(module: XAIStage, num_images: int, alpha: float = 0.5) -> bytes | None:
    """The figure of the first `num_images` explained images, each with the maps of its first evaluated
    label (its most probable class when none is evaluated)."""
    ids = module.explained_ids()[:num_images]
    if not ids:
        return None
    ds = TransformedSplit(module.datamodule_split(), module.transform(), ids)
    classes = list(module.datamodule_split().classes)
    weight = next(module.net.parameters())  # outside the test loop: inputs in the network's precision
    device = weight.device
    images, titles, per_method = [], [], {m: [] for m in module.method_names}
    for item in ds:  # one at a time: images may differ in size when stage.image_size is null
        x, y = item["image"][None].to(device, weight.dtype), item["label"][None].to(device)
        with torch.inference_mode(False), torch.enable_grad():
            probs, targets, maps = module.explain_batch(x, y)
        label = int(targets[0, 0]) if targets.shape[1] and targets[0, 0] >= 0 else int(probs[0].argmax())
        shown = "" if targets.shape[1] and targets[0, 0] >= 0 else " (not evaluated)"
        titles.append(f"{item['id']}\n{classes[label]} p={float(probs[0, label]):.2f}{shown}")
        images.append(display_image(item["image"], module.norm_mean, module.norm_std))
        for m in module.method_names:
            if shown:  # explain the shown class itself
                with torch.inference_mode(False), torch.enable_grad():
                    one = module.methods[m](module.split_model(), x, torch.tensor([[label]], device=device))
            else:
                one = maps[m][:, :1]
            full = resize_maps(one[0, 0].float(), tuple(x.shape[-2:])).clamp(0, 1)
            per_method[m].append(full.cpu().numpy())
    return figure_png(images, titles, {m: np.stack(v) for m, v in per_method.items()}, alpha)
