"""Stage `poc`: P-OC, Puzzle-CAM combined with OC-CSE against a fixed ordinary classifier (thesis Eq. 26).

``L_P-OC = L_cls + L_p-cls + lambda_re * L_re + lambda_cse * l(oc(x * (1 - psi(A^r))), y minus {r})``,
every classification term with label-smoothed targets (`label_smoothing`, 0.1 in P-OC_{+LS}); the
reconstruction term compares raw CAMs masked by the unsmoothed labels.
"""
from __future__ import annotations

import torch

from wsss.losses.pnoc import generator_loss
from wsss.stages.generator import GeneratorStep
from wsss.stages.occse import OCCSEStage
from wsss.stages.puzzle import PuzzleStage


class POCStage(PuzzleStage, OCCSEStage):
    """The puzzle terms of `PuzzleStage` plus the erasing term of `OCCSEStage` (whose `oc` it owns)."""

    def generator_step(self, images: torch.Tensor, labels: torch.Tensor, step: int,
                       total: int) -> GeneratorStep:
        cls, cams = self.classification_term(images, labels)
        pz = self.puzzle_terms(images, labels, cams, step, total)
        cse, erased = self.cse_terms(images, labels, cams, step, total)
        loss = generator_loss(cls, puzzle_classification=pz["p_cls"], reconstruction=pz["re"],
                              reconstruction_weight=pz["lambda_re"], cse=cse["cse"],
                              cse_weight=cse["lambda_cse"])
        return GeneratorStep(loss, {"cls": cls, **pz, **cse}, cams, erased)
