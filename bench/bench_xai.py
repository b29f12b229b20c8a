"""CPU benchmark: our all-labels-at-once CAM methods vs pytorch-grad-cam called once per label.

Model: timm resnet18 (random init) as a 20-class GAP classifier at 224×224, one VOC-like image with
3 present labels. (a) Grad-CAM maps of the 3 present labels (and of all 20) at input resolution:
ours = one body forward + closed-form head gradient; pytorch-grad-cam = one full forward + full
backward (all parameter gradients) + numpy post-processing per label; once more with the network in
channels-last layout for both (the xai stage's `channels_last: true`). The ratio for L labels is bounded
by about 3·L × (their forward time / ours): a forward + backward costs about three forwards; the
"ceiling" row times the body forward alone, the most any method that needs A can gain. (b) Score-CAM with
pytorch-grad-cam's conventions on both sides (`ScoreCAM.pytorch_grad_cam()`: same maps, checked in the run),
the same default memory layout and the same 512 masked forwards per call at the same batch size: ours for the
3 present labels from one set of forwards vs pytorch-grad-cam called once per present label (what a user
explaining an image's labels pays), and ours for all 20 labels vs pytorch-grad-cam for ONE label. Every row:
one warm-up call each, then the median of `--repeats` interleaved runs.

    python bench/bench_xai.py [--repeats 5] [--scorecam-batch 64] [--skip-scorecam] [--arch resnet50 --size 448]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import time

import timm
import torch
from torch import nn

from wsss.xai.methods import GradCAM, ScoreCAM
from wsss.xai.split import SplitModel

NUM_CLASSES = 20
PRESENT = [4, 11, 14]
SCORECAM_TOL = 1e-4  # float32 maps in [0, 1]; the unit tests see 4e-7 on a tiny net


class ForwardFeatures(nn.Module):
    """timm model -> its last feature map (layer4 output for a ResNet)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def timings(fns: list, repeats: int) -> list[list[float]]:
    """Wall times of each function over `repeats` rounds after one warm-up call each; calls interleaved so
    that they share the machine's load."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            acc.append(clock(fn))
    return times


def compare(fns: list, repeats: int) -> list[float]:
    """Median wall time of each function (see `timings`)."""
    return [statistics.median(t) for t in timings(fns, repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scorecam-batch", type=int, default=64)
    parser.add_argument("--skip-scorecam", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="resnet18", help="timm ResNet name (target layer: layer4)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    args = parser.parse_args()

    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    net = timm.create_model(args.arch, pretrained=False, num_classes=NUM_CLASSES).eval().to(args.device)
    model = SplitModel.from_gap_classifier(ForwardFeatures(net), net.fc.weight, net.fc.bias)
    image = torch.randn(1, 3, args.size, args.size).to(args.device)
    present = torch.tensor([PRESENT])
    print(f"{args.arch} (random init), 1 image {args.size}x{args.size}, {NUM_CLASSES} classes, present labels {PRESENT}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}")

    rows = []

    def pgc_gradcam(labels, network=net):
        with PgcGradCAM(model=network, target_layers=[network.layer4]) as cam:
            return [cam(input_tensor=image, targets=[ClassifierOutputTarget(c)]) for c in labels]

    ours_grad = GradCAM(resolution="input")
    for name, labels, repeats in (("Grad-CAM, 3 present labels", PRESENT, args.repeats),
                                  ("Grad-CAM, all 20 labels", list(range(NUM_CLASSES)), args.repeats)):
        targets = torch.tensor([labels])
        times = compare([lambda: ours_grad(model, image, targets), lambda: pgc_gradcam(labels)], repeats)
        rows.append((name, *times, f"GradCAM x{len(labels)} calls"))

    # the xai stage's `channels_last: true` (weights and inputs channels-last); pytorch-grad-cam gets the
    # same channels-last network, so the ratio is not bought by the layout alone
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    model_cl = SplitModel.from_gap_classifier(ForwardFeatures(net_cl), net_cl.fc.weight, net_cl.fc.bias)
    ours_grad_cl = GradCAM(resolution="input", channels_last=True)
    targets = torch.tensor([PRESENT])
    times = compare([lambda: ours_grad_cl(model_cl, image, targets), lambda: pgc_gradcam(PRESENT, net_cl)],
                    args.repeats)
    rows.append(("Grad-CAM, 3 labels, chan.-last", *times, "GradCAM x3, chan.-last"))

    # the ceiling of any method that needs A: one body forward and nothing else
    image_cl = image.contiguous(memory_format=torch.channels_last)

    def body_only():
        with torch.no_grad():
            return model_cl.features(image_cl)
    times = compare([body_only, lambda: pgc_gradcam(PRESENT, net_cl)], args.repeats)
    rows.append(("ceiling: body forward only", *times, "GradCAM x3, chan.-last"))

    # the body in bf16 (the xai stage under trainer.precision=bf16-true; CPUs with AVX512-BF16/AMX, GPUs):
    # not the same numbers, so the largest map difference to the float32 maps is printed with it
    net_bf16 = copy.deepcopy(net_cl).to(torch.bfloat16)
    model_bf16 = SplitModel.from_gap_classifier(ForwardFeatures(net_bf16), net_cl.fc.weight, net_cl.fc.bias)
    image_bf16 = image.to(torch.bfloat16)
    times = compare([lambda: ours_grad_cl(model_bf16, image_bf16, targets), lambda: pgc_gradcam(PRESENT, net_cl)],
                    args.repeats)
    rows.append(("Grad-CAM, 3 labels, bf16 body", *times, "GradCAM x3, chan.-last"))
    bf16_error = (ours_grad_cl(model_bf16, image_bf16, targets) - ours_grad(model, image, targets)).abs().max().item()

    # parity of the benchmarked maps (same conventions), so the speed-up is for the same output
    ours_pgc = GradCAM(resolution="input", normalize="minmax_pgc")(model, image, present)[0]
    ref = torch.stack([torch.from_numpy(m[0]) for m in pgc_gradcam(PRESENT)]).to(ours_pgc.device)
    parity = (ours_pgc - ref).abs().max().item()

    score_parity = None
    if not args.skip_scorecam:
        score_parity = bench_scorecam(net, model, image, args, rows)

    print(f"\n{'case':<32}{'ours s':>9}   {'pytorch-grad-cam':<22}{'s':>9}{'speed-up':>10}")
    for name, t_ours, t_ref, ref_name in rows:
        print(f"{name:<32}{t_ours:>9.4f}   {ref_name:<22}{t_ref:>9.4f}{t_ref / t_ours:>9.1f}x")
    print(f"medians of {args.repeats} interleaved runs after one warm-up call each; on a loaded machine the "
          "ratios are indicative")
    print(f"Grad-CAM max |ours - pgc| on the present labels (pgc normalisation): {parity:.2e}")
    print(f"bf16 body: max |bf16 map - float32 map| = {bf16_error:.2e} (maps min-max normalised to [0, 1])")
    if score_parity is not None:
        print(f"Score-CAM max |ours - pgc| on the present labels (pgc conventions): {score_parity:.2e}")


def bench_scorecam(net: nn.Module, model: SplitModel, image: torch.Tensor, args, rows: list) -> float:
    """Score-CAM rows (both sides: default layout, pytorch-grad-cam's conventions, same masked forwards and
    batch size); returns the largest map difference on the present labels, raising past SCORECAM_TOL."""
    from pytorch_grad_cam import ScoreCAM as PgcScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = ScoreCAM.pytorch_grad_cam(batch_size=args.scorecam_batch)
    present = torch.tensor([PRESENT])

    def pgc_one(label: int):
        def call():
            quiet = contextlib.redirect_stderr(io.StringIO())  # its tqdm bars
            with quiet, PgcScoreCAM(model=net, target_layers=[net.layer4]) as cam:
                cam.batch_size = args.scorecam_batch
                return cam(input_tensor=image, targets=[ClassifierOutputTarget(label)])
        return call

    maps = ours(model, image, present)[0]  # parity before timing, on the maps that are timed
    ref = torch.stack([torch.from_numpy(pgc_one(c)()[0]) for c in PRESENT]).to(maps.device)
    parity = (maps - ref).abs().max().item()
    if parity > SCORECAM_TOL:
        raise AssertionError(f"Score-CAM maps differ from pytorch-grad-cam's by {parity:.2e} > {SCORECAM_TOL}: "
                             "the timed computations are not the same")
    fns = [lambda: ours(model, image, present), lambda: ours(model, image, None), *map(pgc_one, PRESENT)]
    t_present, t_all, *t_pgc = timings(fns, args.repeats)
    per_label = statistics.median([t for ts in t_pgc for t in ts])
    per_image = statistics.median([sum(round_) for round_ in zip(*t_pgc)])
    rows.append((f"Score-CAM, {len(PRESENT)} present labels", statistics.median(t_present), per_image,
                 f"ScoreCAM x{len(PRESENT)} calls"))
    rows.append(("Score-CAM, ours all 20 labels", statistics.median(t_all), per_label, "ScoreCAM, 1 label"))
    return parity


if __name__ == "__main__":
    main()
