"""Ground-truth masks for evaluation only (no weakly supervised stage trains or selects models on them)."""
from __future__ import annotations

import numpy as np


def ground_truth_mask(dataset, image_id: str) -> np.ndarray:
    """The mask of `image_id`; a missing one is an error naming the file the evaluation needs."""
    mask = dataset.load_mask(image_id)
    if mask is None:
        raise FileNotFoundError(f"{dataset.mask_path(image_id)}: ground-truth mask needed to evaluate {image_id!r}")
    return mask
