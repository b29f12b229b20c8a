"""Stage `puzzle`: Puzzle-CAM (thesis §3.2, Eq. 5), trained without ground-truth checkpoint selection (P^f).

The full image and its n x n tiles go through the same CAM network; the tiles' raw CAMs are merged
back into one map ``A_re``. ``L = L_cls + L_p-cls + lambda_re(t) * L_re`` with ``lambda_re`` ramping
0 -> 4 over the first half of the run (lucasdavid/PNOC@f250e0d:scripts/cam/train_puzzle.py). The checkpoint is
the last one: no GT mask is ever used to pick an epoch (the thesis' "fair" protocol, P^f).
"""
from __future__ import annotations

import torch

from wsss.losses.pnoc import generator_loss
from wsss.losses.puzzle import merge, puzzle_losses, tile
from wsss.stages.generator import GeneratorStage, GeneratorStep, ramp


class PuzzleStage(GeneratorStage):
    """Puzzle-CAM: classification + puzzle classification + ramped reconstruction (Eq. 5)."""

    def puzzle_terms(self, images: torch.Tensor, labels: torch.Tensor, cams: torch.Tensor,
                     step: int, total: int) -> dict:
        """``L_p-cls``, ``L_re`` and ``lambda_re`` given the full images' raw CAMs ``cams``.

        The tiles make a second forward pass (their own BatchNorm statistics, as the reference)."""
        p = self.scfg.puzzle
        n = int(p.grid)
        _, tile_cams = self.net(tile(images, n))
        terms = puzzle_losses(cams.float(), merge(tile_cams, n).float(), labels,
                              self.scfg.label_smoothing, p.distance,
                              p.normalization)
        return {"p_cls": terms.classification, "re": terms.reconstruction,
                "lambda_re": ramp(p["reconstruction_ramp"], step, total)}

    def generator_step(self, images: torch.Tensor, labels: torch.Tensor, step: int,
                       total: int) -> GeneratorStep:
        cls, cams = self.classification_term(images, labels)
        pz = self.puzzle_terms(images, labels, cams, step, total)
        loss = generator_loss(cls, puzzle_classification=pz["p_cls"], reconstruction=pz["re"],
                              reconstruction_weight=pz["lambda_re"])
        return GeneratorStep(loss, {"cls": cls, **pz}, cams, None)
