"""One training step of puzzle / poc / pnoc computes the thesis's objective (Eq. 5, 26, 27, 28), checked
against an independent evaluation of the equation on the same fixed batch and the same weights.

lr = 0 keeps the weights fixed across the steps, so the expectation computed just before a step (from a
snapshot of the module's state, restored afterwards) is the value the step must log. Three batches of one
epoch put the ramps at t/T = 0, 1/3, 2/3: lambda_re = 4 min(1, t / (T/2)), lambda_cse = 0.3 + 0.7 t/T,
lambda_noc = t/T (the thesis code's runners).
"""
import copy

import pytest
import pytorch_lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import get_class
from omegaconf import OmegaConf
from pytorch_lightning import Callback

EPS_LS = 0.1
BATCHES = 3


def bce(logits, targets):
    t = targets * (1 - EPS_LS) + EPS_LS / 2
    return F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none").mean(1).mean()


def quadrant_merged_cams(net, x):
    h, w = x.shape[-2:]
    quads = [x[..., :h // 2, :w // 2], x[..., :h // 2, w // 2:], x[..., h // 2:, :w // 2], x[..., h // 2:, w // 2:]]
    _, cams = net(torch.cat(quads))
    tl, tr, bl, br = cams.split(x.shape[0])
    return torch.cat([torch.cat([tl, tr], -1), torch.cat([bl, br], -1)], -2)


def erased_mask(cams, r, size, per_image):
    a = F.relu(cams[torch.arange(len(r)), r])[:, None]
    a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    peak = a.amax(dim=(1, 2, 3), keepdim=True) if per_image else a.amax()
    return a / (peak + 1e-5)


@torch.no_grad()
def expected_terms(module, name, x, y, step, total):
    logits, cams = module.net(x)
    out = {"loss": bce(logits, y)}
    merged = quadrant_merged_cams(module.net, x)
    out["loss"] += bce(merged.mean((2, 3)), y)                                       # L_p-cls
    out["loss"] += 4 * min(1.0, step / (0.5 * total)) * ((merged - cams).abs() * y[:, :, None, None]).mean()
    if name == "puzzle":
        return out
    r = module.draw_erased(y, step)
    soft = erased_mask(cams, r, x.shape[-2:], per_image=False)
    remaining = y.clone()
    remaining[torch.arange(len(r)), r] = 0
    out["loss"] += (0.3 + 0.7 * step / total) * bce(module.oc(x * (1 - soft))[0], remaining)   # Eq. 26 / 27
    if name == "pnoc":
        hard = erased_mask(cams, r, x.shape[-2:], per_image=True) > 0.2
        module.oc.train()  # noc.oc_batchnorm=train: the oc's own step sees batch statistics
        out["noc"] = (step / total) * bce(module.oc(x * (~hard))[0], y)                            # Eq. 28
        module.oc.eval()
    return out


class Check(Callback):
    def __init__(self, name):
        self.name, self.expected, self.got = name, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        state = copy.deepcopy(module.state_dict())
        step, total = module.batch_position()
        self.expected.append(expected_terms(module, self.name, batch["image"], batch["label"], step, total))
        module.load_state_dict(state)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        m = trainer.callback_metrics
        returned = outputs.get("loss") if isinstance(outputs, dict) else outputs  # None: manual optimisation
        got = {"loss": returned.detach() if returned is not None else m["train/loss"]}
        if self.name == "pnoc":
            got["noc"] = m["train/noc"]
        self.got.append({k: float(v) for k, v in got.items()})


def fixed_batches(num_classes):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(BATCHES):
        y = (torch.rand(4, num_classes, generator=g) > 0.6).float()
        y[torch.arange(4), torch.randint(0, num_classes, (4,), generator=g)] = 1.0
        out.append({"image": torch.randn(4, 3, 64, 64, generator=g), "label": y, "id": [f"{i}-{j}" for j in range(4)]})
    return out


@pytest.mark.parametrize("name", ["puzzle", "poc", "pnoc"])
def test_training_step_computes_the_thesis_objective(name, make_cfg):
    cfg = make_cfg(f"stage={name}", "stage.lr=0.0", "stage.weight_decay=0.0", "stage.momentum=0.0",
                   f"stage.label_smoothing={EPS_LS}", "seed=7")
    plain = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(0)
    module = get_class(plain["stage"]["_target_"])(plain)
    module.load_oc = lambda path: None  # a random ordinary classifier is as good as a trained one here
    check = Check(name)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[check],
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(fixed_batches(module.num_classes),
                                                                      batch_size=None))
    assert len(check.got) == BATCHES
    for expected, got in zip(check.expected, check.got):
        assert got == pytest.approx({k: float(v) for k, v in expected.items()}, rel=1e-4, abs=1e-6)
    if name == "pnoc":
        assert check.got[0]["noc"] == 0.0 and check.got[2]["noc"] > 0  # lambda_noc ramps from 0
