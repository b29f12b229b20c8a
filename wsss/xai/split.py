"""A classifier split at the explained layer: `body(x) -> A` and `head(A) -> logits`.

Every CAM method runs the body once per batch and works on the activations `A` (B, K, h, w)
afterwards: gradients are taken through the head only, and Score-/Ablation-CAM re-run only what
they must. For the project's CAM network (backbone → 1×1 conv → GAP (+ bias), thesis eq. 17 and 25)
the head is linear in the pooled features, so the gradients have a closed form: ∂s_c/∂A_kij = W_ck / hw.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch
from torch import nn

WeightSource = Union[torch.Tensor, Callable[[], torch.Tensor]]


class GapLinearHead(nn.Module):
    """`s = W · mean_hw(A) + b`, equal to a 1×1 convolution followed by GAP.

    Args:
        weight: the effective classifier weight, shape (C, K) or (C, K, 1, 1), or a callable
            returning it (e.g. `cam_head.effective_weight`, so KUR's re-parametrisation is read at
            call time and never cached).
        bias: optional (C,) bias; it shifts the logits but never enters a CAM.
    """

    def __init__(self, weight: WeightSource, bias: torch.Tensor | None = None):
        super().__init__()
        self._weight = weight
        self.bias = bias

    def weight(self) -> torch.Tensor:
        w = self._weight() if callable(self._weight) else self._weight
        if w.dim() == 4 and w.shape[2:] == (1, 1):
            w = w[:, :, 0, 0]
        if w.dim() != 2:
            raise ValueError(f"classifier weight has shape {tuple(w.shape)}; expected (C, K) or (C, K, 1, 1)")
        return w

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        w = self.weight()
        logits = activations.mean(dim=(2, 3)) @ w.to(activations.dtype).t()
        if self.bias is not None:
            logits = logits + self.bias.to(logits.dtype)
        return logits


class SplitModel(nn.Module):
    """A classifier as `head(body(x))`.

    Args:
        body: images (B, 3, H, W) -> activations (B, K, h, w). A body returning a list or tuple of
            stage features (like `wsss.models.backbone.Backbone`) is reduced to its last element.
        head: activations -> logits (B, C); must treat samples independently (eval mode).
        weight: optional effective (C, K) weight when the head is GAP + linear; enables closed forms
            (CAM, MinMax-CAM weight form, analytic gradients). Use `from_gap_classifier` to set it.
    """

    def __init__(self, body: nn.Module, head: nn.Module, weight: WeightSource | None = None):
        super().__init__()
        self.body = body
        self.head = head
        self._weight = weight

    @classmethod
    def from_gap_classifier(cls, body: nn.Module, weight: WeightSource,
                            bias: torch.Tensor | None = None) -> "SplitModel":
        """A GAP classifier `s = W · GAP(body(x)) + b` with known effective weight W (C, K)."""
        head = GapLinearHead(weight, bias)
        return cls(body, head, weight=head.weight)

    @classmethod
    def from_cam_net(cls, net: nn.Module, body: nn.Module | None = None) -> "SplitModel":
        """A `wsss.models.cam_head.CAMNet` split at its last feature map: the effective (KUR) weight read at
        call time and the head's bias, if it has one, in the logits (never in a CAM). `body` replaces the
        net's backbone (e.g. one that caches the batch's features)."""
        return cls.from_gap_classifier(body or net.backbone, net.head.effective_weight, net.head.bias)

    @classmethod
    def from_modules(cls, body: nn.Module, head: nn.Module) -> "SplitModel":
        """Any network cut in two; gradients go through `head` by autograd."""
        return cls(body, head)

    @property
    def has_linear_head(self) -> bool:
        return self._weight is not None

    def linear_weight(self) -> torch.Tensor:
        """The effective (C, K) classifier weight; raises if the head is not GAP + linear."""
        if self._weight is None:
            raise ValueError("this SplitModel has no linear GAP head (built with from_modules); the method "
                             "needs SplitModel.from_gap_classifier(body, weight)")
        w = self._weight() if callable(self._weight) else self._weight
        return w[:, :, 0, 0] if w.dim() == 4 else w

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"images have shape {tuple(images.shape)}; expected (B, C, H, W)")
        out = self.body(images)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        if out.dim() != 4:
            raise ValueError(f"body returned activations of shape {tuple(out.shape)}; expected (B, K, h, w)")
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    def score_gradients(self, activations: torch.Tensor, coefficients: torch.Tensor,
                        logits: torch.Tensor | None = None) -> torch.Tensor:
        """Gradients of linear combinations of the logits w.r.t. the activations, head only.

        For every image b and objective l, returns ∂(Σ_c coefficients[b, l, c] · s_bc)/∂A_b.

        Args:
            activations: A (B, K, h, w).
            coefficients: (B, L, C).
            logits: head(A) computed from a graph on `activations` (required without a linear head).

        Returns:
            (B, L, K, 1, 1) for a GAP + linear head (the gradient is constant over space:
            (coefficients @ W) / hw), otherwise (B, L, K, h, w) from one batched backward pass.
        """
        if self.has_linear_head:
            h, w = activations.shape[-2:]
            weight = self.linear_weight().to(coefficients.dtype)
            return (coefficients @ weight / (h * w))[..., None, None]
        if logits is None or not activations.requires_grad:
            raise ValueError("score_gradients without a linear head needs logits = head(A) "
                             "with A.requires_grad")
        grad_outputs = coefficients.transpose(0, 1).to(logits.dtype)  # (L, B, C)
        try:
            (grads,) = torch.autograd.grad(logits, activations, grad_outputs, retain_graph=True,
                                           is_grads_batched=True)
        except RuntimeError:  # some heads do not support vmap; one backward per objective instead
            grads = torch.stack([torch.autograd.grad(logits, activations, g, retain_graph=True)[0]
                                 for g in grad_outputs])
        return grads.transpose(0, 1)  # (B, L, K, h, w)


def as_split_model(model: SplitModel | Sequence[nn.Module]) -> SplitModel:
    """Accepts a SplitModel or a (body, head) pair."""
    if isinstance(model, SplitModel):
        return model
    if isinstance(model, (tuple, list)) and len(model) == 2:
        return SplitModel.from_modules(*model)
    raise TypeError(f"expected a SplitModel or a (body, head) pair, got {type(model).__name__}")
