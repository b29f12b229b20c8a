"""Multi-label XAI metrics (thesis eq. 12–16, F1±): brute force, a hand-computed toy, DDP-style merge."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wsss.xai.methods import GradCAM
from wsss.xai.metrics import MultiLabelCamMetrics, labels_to_targets, masked_probabilities, update_cam_metrics
from wsss.xai.split import SplitModel


def brute_force(probs, targets, masked, antimasked, num_classes):
    """Eq. 12–16 per (i, c), averaged per class then over classes, written with plain loops."""
    sums = {k: [0.0] * num_classes for k in ("ic", "ad", "ado", "ar", "aro")}
    counts = [0] * num_classes
    for i in range(probs.shape[0]):
        label_set = [int(c) for c in targets[i] if c >= 0]
        for slot, c in enumerate(targets[i].tolist()):
            if c < 0:
                continue
            y, o, o_bar = probs[i].tolist(), masked[i, slot].tolist(), antimasked[i, slot].tolist()
            others = [n for n in label_set if n != c]
            counts[c] += 1
            sums["ic"][c] += float(y[c] < o[c])
            sums["ad"][c] += max(0.0, y[c] - o[c]) / y[c]
            sums["ar"][c] += max(0.0, y[c] - o_bar[c]) / y[c]
            sums["ado"][c] += sum(max(0.0, y[n] - o[n]) / y[n] for n in others) / max(1, len(others))
            sums["aro"][c] += sum(max(0.0, y[n] - o_bar[n]) / y[n] for n in others) / max(1, len(others))
    per_class = {k: [100 * s / n if n else math.nan for s, n in zip(v, counts)] for k, v in sums.items()}

    def f1(a, b):
        return 2 * a * b / (a + b) if a + b else 0.0
    per_class["f1_pos"] = [f1(a, b) for a, b in zip(per_class["ar"], per_class["ado"])]
    per_class["f1_neg"] = [f1(a, b) for a, b in zip(per_class["ad"], per_class["aro"])]
    macro = {k: sum(x for x in v if not math.isnan(x)) / sum(not math.isnan(x) for x in v)
             for k, v in per_class.items()}
    return per_class, macro


def random_batch(seed: int, b: int = 5, c: int = 6):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(b, c, generator=g) * 0.9 + 0.05
    # classes 4 and 5 are never evaluated
    targets = torch.tensor([[0, 2, 3], [1, -1, -1], [3, 0, -1], [2, 3, 1], [0, -1, -1]])[:b]
    masked = torch.rand(b, 3, c, generator=g)
    antimasked = torch.rand(b, 3, c, generator=g)
    return probs, targets, masked, antimasked


def test_matches_brute_force_per_class_and_macro():
    probs, targets, masked, antimasked = random_batch(0)
    metric = MultiLabelCamMetrics(num_classes=6)
    metric.update(probs, targets, masked, antimasked)
    out = metric.compute()
    per_class, macro = brute_force(probs, targets, masked, antimasked, 6)
    for key in ("ic", "ad", "ado", "ar", "aro", "f1_pos", "f1_neg"):
        torch.testing.assert_close(out[f"{key}_per_class"], torch.tensor(per_class[key]), equal_nan=True,
                                   atol=1e-4, rtol=1e-5)
        assert out[key].item() == pytest.approx(macro[key], rel=1e-5)
    assert out["ad_per_class"][4].isnan() and out["ad_per_class"][5].isnan()  # never evaluated: skipped
    single = MultiLabelCamMetrics(num_classes=6)  # image 1 has a single label: ADO = 0, still counted
    single.update(probs[1:2], targets[1:2], masked[1:2], antimasked[1:2])
    assert single.compute()["ado_per_class"][1] == 0 and single.count[1] == 1
    # the paper's F1 is per class then averaged, not the harmonic mean of the macros
    assert out["f1_pos"].item() != pytest.approx(out["f1_pos_of_macros"].item(), rel=1e-3)


def test_micro_average_weights_every_pair():
    probs, targets, masked, antimasked = random_batch(1)
    metric = MultiLabelCamMetrics(num_classes=6)
    metric.update(probs, targets, masked, antimasked)
    y = probs.gather(1, targets.clamp(min=0))
    o = masked.gather(2, targets.clamp(min=0)[..., None])[..., 0]
    valid = targets >= 0
    expected = 100 * ((y - o).clamp(min=0) / y)[valid].mean()
    assert metric.compute()["ad_micro"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_states_merge_like_ddp():
    probs, targets, masked, antimasked = random_batch(2)
    whole = MultiLabelCamMetrics(num_classes=6)
    whole.update(probs, targets, masked, antimasked)
    first, second = MultiLabelCamMetrics(num_classes=6), MultiLabelCamMetrics(num_classes=6)
    first.update(probs[:2], targets[:2], masked[:2], antimasked[:2])
    second.update(probs[2:], targets[2:], masked[2:], antimasked[2:])
    first.merge_state(second)
    for key, value in whole.compute().items():
        torch.testing.assert_close(first.compute()[key], value, equal_nan=True)


def test_states_stay_float64_when_the_module_goes_bf16():
    """Lightning's bf16-true calls module.to(torch.bfloat16): per-class sums must not become bf16
    (they would stop counting at 256 and index_add_ would refuse the float64 values)."""
    probs, targets, masked, antimasked = random_batch(3)
    reference = MultiLabelCamMetrics(num_classes=6)
    reference.update(probs, targets, masked, antimasked)
    metric = torch.nn.ModuleDict({"m": MultiLabelCamMetrics(num_classes=6)}).to(torch.bfloat16)["m"]
    assert all(getattr(metric, name).dtype == torch.float64 for name in metric._defaults)
    metric.update(probs.bfloat16(), targets, masked.bfloat16(), antimasked.bfloat16())
    for key, value in reference.compute().items():
        torch.testing.assert_close(metric.compute()[key], value, equal_nan=True, atol=2.0, rtol=0.0)  # bf16 inputs


def toy_model() -> SplitModel:
    """Activations are the image itself; s = W · mean_hw(x) with W = 4·I (class 3 never fires)."""
    weight = torch.zeros(4, 3)
    weight[:3] = 4 * torch.eye(3)
    return SplitModel.from_gap_classifier(nn.Identity(), weight)


def test_hand_computed_values_on_toy_model():
    images = torch.zeros(2, 3, 4, 4)
    images[0, 0, :, :2] = 1  # class 0 on the left: s = [2, 2, 0, 0]
    images[0, 1, :, 2:] = 1  # class 1 on the right
    images[1, 2] = 1  # class 2 everywhere: s = [0, 0, 4, 0]
    maps = torch.zeros(2, 2, 4, 4)
    maps[0, 0, :, :2] = 1  # label 0: exactly its half
    maps[0, 1] = 1  # label 1: a constant map, normalised to 0 (0/0 := 0)
    maps[1, 0, :2] = 1  # label 2: top half
    model = toy_model()
    metric = MultiLabelCamMetrics(num_classes=4)
    probs = torch.sigmoid(model(images))
    targets = metric.select_targets(probs)
    assert targets.tolist() == [[0, 1], [2, -1]]
    update_cam_metrics(metric, model, images, maps, targets)
    out = metric.compute()
    s2, s4 = torch.sigmoid(torch.tensor(2.0)).item(), torch.sigmoid(torch.tensor(4.0)).item()
    q2, q4 = 100 * (s2 - 0.5) / s2, 100 * (s4 - s2) / s4
    expected = {"ic": [0, 0, 0], "ad": [0, q2, q4], "ado": [q2, q2, 0], "ar": [q2, 0, q4], "aro": [0, 0, 0],
                "f1_pos": [q2, 0, 0], "f1_neg": [0, 0, 0]}
    for key, values in expected.items():
        torch.testing.assert_close(out[f"{key}_per_class"][:3], torch.tensor(values, dtype=torch.float32),
                                   atol=1e-4, rtol=1e-5)
        assert out[key].item() == pytest.approx(sum(values) / 3, abs=1e-4)
    assert out["ad_per_class"][3].isnan()
    assert out["count"].tolist() == [1, 1, 1, 0]


def test_class_set_labels_uses_ground_truth():
    metric = MultiLabelCamMetrics(num_classes=4, class_set="labels")
    probs = torch.tensor([[0.9, 0.1, 0.6, 0.2]])
    labels = torch.tensor([[0, 1, 0, 1]])
    assert metric.select_targets(probs, labels).tolist() == [[1, 3]]
    assert MultiLabelCamMetrics(num_classes=4).select_targets(probs).tolist() == [[0, 2]]
    with pytest.raises(ValueError, match="labels"):
        metric.select_targets(probs)
    assert labels_to_targets(torch.zeros(2, 3, dtype=torch.bool)).shape == (2, 0)


def test_masked_probabilities_match_pgc_confidence_change(make_tiny, images):
    """σ(f(x ⊙ M))_c − σ(f(x))_c equals pytorch-grad-cam's CamMultImageConfidenceChange (sigmoid target)."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange

    net = make_tiny()
    targets = torch.tensor([[1, 3], [0, 4], [2, 2]])
    maps = GradCAM(resolution="input")(net.split_gap(), images, targets)
    masked, _ = masked_probabilities(net, images, maps, targets, retention=False, normalize=False)
    probs = torch.sigmoid(net(images)).detach()
    for slot in range(2):
        sig_targets = [lambda o, c=int(c): torch.sigmoid(o)[c] for c in targets[:, slot]]
        ref = CamMultImageConfidenceChange()(images, maps[:, slot].numpy(), sig_targets, net)
        index = targets[:, slot, None]
        ours = masked[:, slot].gather(1, index)[:, 0] - probs.gather(1, index)[:, 0]
        torch.testing.assert_close(ours, torch.from_numpy(ref).float().flatten(), atol=1e-6, rtol=0)


def test_update_rejects_misaligned_shapes():
    metric = MultiLabelCamMetrics(num_classes=3)
    with pytest.raises(ValueError, match="masked_probs"):
        metric.update(torch.rand(2, 3), torch.zeros(2, 1, dtype=torch.long), torch.rand(2, 2, 3))
