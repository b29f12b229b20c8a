"""Where a step's wall time goes: shares of the main thread by phase, from a py-spy recording.

    pip install py-spy          # not a wsss dependency
    py-spy record --idle --subprocesses -r 40 -f raw -o step.raw -- \
        python run.py experiment=synthetic stage=<stage> [the step's overrides from pipeline.dry_run=true]
    python scripts/step_profile.py step.raw

`--idle` keeps the samples where the main thread waits (for data-loader workers, for a CRF pool), so the
shares are of wall time, not of CPU time. Samples of data-loader worker processes are counted apart
(busy = inside a data set's __getitem__). Phases are matched on the stack, first rule wins.
"""
from __future__ import annotations

import argparse
import collections
import re

PHASES = [
    ("crf", r"crf|densecrf"),
    ("random walk", r"\(wsss/refine/random_walk"),
    ("evaluation (mIoU sweeps)", r"\((wsss/cams/evaluate|wsss/saliency/evaluate|wsss/segmentation/evaluate)"
                                 r"|evaluate \(wsss/tasks|evaluate_task|segmentation_evaluate"),
    ("predict: data wait", r"predict.*(_next_data|__next__ \(torch/utils/data)"),
    ("predict: forward (multi-scale + flip)", r"predict_step.*(forward|_call_impl)"),
    ("predict: other (resize, normalise, write)", r"predict"),
    ("validation", r"_evaluation_loop|validation_step|on_validation"),
    ("train: data wait", r"fit_loop.*(_next_data|__next__ \(torch/utils/data|fetch)"),
    ("train: backward", r"_engine_run_backward|run_backward|manual_backward \("),
    ("train: forward + loss", r"training_step|compute_loss|generator_step"),
    ("train: optimiser", r"Optimizer|SGD|sgd|_single_tensor|_multi_tensor|zero_grad|step \(torch/optim"),
    ("checkpoint save/load", r"save_checkpoint|torch/serialization|load_checkpoint"),
    ("train: loop, hooks, logging", r"fit_loop|_run_stage|_fit_impl"),
    ("data set scan, set-up", r"scan|build_split|Context.__init__|setup"),
    ("CRF pool (affinity labels, pseudo masks)", r"pool_imap|ApplyResult"),
    ("artifact writes", r"atomic_write|write_png|write_npz"),
    ("start-up: imports", r"_find_and_load"),
    ("start-up: config", r"hydra|omegaconf|compose"),
]
RULES = [(name, re.compile(pattern)) for name, pattern in PHASES]


def phase(stack: str) -> str:
    return next((name for name, rule in RULES if rule.search(stack)), "other")


def shares(path: str) -> tuple[collections.Counter, collections.Counter]:
    """(main-thread samples by phase, worker samples busy/idle) of a `py-spy record -f raw` file."""
    main, workers = collections.Counter(), collections.Counter()
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2:
            continue
        if frames[1].startswith("process "):          # a child process (data-loader worker, CRF pool)
            workers["busy" if "__getitem__" in stack else "idle"] += int(count)
        elif frames[1].startswith("<module> (run.py"):  # the main thread (helper threads start elsewhere)
            main[phase(";".join(frames[1:]))] += int(count)
    return main, workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", help="py-spy record -f raw output")
    main_samples, workers = shares(parser.parse_args().raw)
    total = sum(main_samples.values()) or 1
    print(f"main thread, {total} samples:")
    for name, n in main_samples.most_common():
        print(f"  {name:44s} {100 * n / total:5.1f} %")
    print(f"child processes: {dict(workers)} samples")


if __name__ == "__main__":
    main()
