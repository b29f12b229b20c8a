"""Dense-CRF post-processing of segmentation probabilities, overlapped with the network's inference.

`LabelMapWriter.submit(id, image, probs)` turns the probabilities of one image into a palette PNG
(optionally through the DeepLab-v2 probability CRF of lucasdavid/PNOC@6c8950a:tools/ai/demo_utils.py) and
writes it atomically. With `processes > 1` the CRF runs in a pool of spawned workers
(`wsss.ops.pool.OrderedPool`) while the accelerator goes on with the next images; fewer than `2 ·
processes` images are in flight (bounded memory). `close()` waits for them and
re-raises the first error. This module imports only numpy, PIL and pydensecrf (fast worker start).
"""
from __future__ import annotations

import numpy as np

from wsss.artifacts import ArtifactDir
from wsss.ops.crf import DEEPLAB_V2_CRF, PairwiseParams, crf_probabilities
from wsss.ops.pool import OrderedPool


def label_map(probs: np.ndarray, image: np.ndarray | None = None, iterations: int = 0,
              params: PairwiseParams = DEEPLAB_V2_CRF, gt_prob: float | None = None) -> np.ndarray:
    """(H, W) uint8 argmax of `probs` (K, H, W), after `iterations` of dense CRF when > 0."""
    if iterations > 0:
        if image is None:
            raise ValueError("the dense CRF needs the RGB image of the prediction")
        probs = crf_probabilities(image, probs, iterations, params, gt_prob)
    if probs.shape[0] > 255:
        raise ValueError(f"{probs.shape[0]} classes do not fit a uint8 PNG (255 = ignore)")
    return np.argmax(probs, axis=0).astype(np.uint8)


def write_label_map(root: str, suffix: str, image_id: str, probs: np.ndarray, image: np.ndarray | None,
                    iterations: int, params: PairwiseParams, gt_prob: float | None = None) -> str:
    ArtifactDir(root, suffix).write_png(image_id, label_map(probs, image, iterations, params, gt_prob),
                                        palette=True)
    return image_id


class LabelMapWriter:
    """Writes palette PNG label maps into `writer`'s folder, with an optional CRF in a process pool.

    Args:
        writer: destination folder (`.png` suffix).
        crf_iterations: mean-field iterations of the probability CRF (0 = plain argmax; 10 upstream).
        processes: CRF worker processes (1 = inline, no pool).
        params: CRF kernels (DeepLab-v2 set by default).
        gt_prob: the softmax unary's mix with the uniform (None = plain −log p), see `crf_probabilities`.
    """

    def __init__(self, writer: ArtifactDir, crf_iterations: int = 0, processes: int = 1,
                 params: PairwiseParams = DEEPLAB_V2_CRF, gt_prob: float | None = None):
        if processes < 1:
            raise ValueError(f"inference.crf.processes={processes}; expected >= 1")
        self.writer = writer
        self.iterations = int(crf_iterations)
        self.params = params
        self.gt_prob = gt_prob
        use_pool = processes > 1 and self.iterations > 0
        self.pool = OrderedPool(processes if use_pool else 1, window=2 * processes)

    def submit(self, image_id: str, probs: np.ndarray, image: np.ndarray | None = None) -> None:
        args = (str(self.writer.root), self.writer.suffix, image_id, np.asarray(probs, np.float32), image,
                self.iterations, self.params, self.gt_prob)
        if self.pool.pool is None:
            self.writer.write_png(image_id, label_map(*args[3:]), palette=True)
            return
        self._record(self.pool.submit(image_id, write_label_map, args))

    def _record(self, done) -> None:
        written = getattr(self.writer, "written", None)  # what this rank wrote, for the manifest
        if written is not None:
            written.extend(image_id for image_id, _ in done)

    def close(self) -> None:
        """Wait for every submitted image; re-raise the first worker error."""
        try:
            self._record(list(self.pool.drain()))
        finally:
            self.pool.close()

    def __enter__(self) -> "LabelMapWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.pool.terminate()
        self.close()


def crf_params(cfg: dict | None) -> tuple[int, int, PairwiseParams, float | None]:
    """(iterations, processes, kernels, gt_prob) from `inference.crf` (null = no CRF)."""
    if not cfg:
        return 0, 1, DEEPLAB_V2_CRF, None
    known = {"iterations", "processes", "params", "gt_prob"}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"inference.crf has unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
    params = PairwiseParams(**cfg["params"]) if cfg.get("params") else DEEPLAB_V2_CRF
    gt_prob = cfg.get("gt_prob")
    return int(cfg.get("iterations", 10)), int(cfg.get("processes", 1)), params, \
        None if gt_prob is None else float(gt_prob)
