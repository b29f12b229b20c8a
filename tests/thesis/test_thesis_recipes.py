"""The voc12 recipes carry the upstream runner values, each pinned to the file and line it comes from.

`voc12_*` without suffix: the chain behind thesis Table 2 (72.7 %), lucasdavid/PNOC@f250e0d. `*_sep2023`:
the Sept-2023 chain of lucasdavid/PNOC@42e611d (73.5 % in the upstream README since 9883452). The comment
after each value names its source (F = f250e0d runners/sdumont/, S = 42e611d runners/).
"""
import pytest
from omegaconf import OmegaConf

from tests.helpers import compose_config

EXPECTED = {
    "voc12_rs269": {"trainer.precision": "32-true"},  # F 1-classification/voc12/1-train-vanilla.sh
    "voc12_rs269_pf": {"stage.batch_size": 32, "stage.lr": 0.1, "stage.augment.color_jitter": True,
                       "trainer.precision": "32-true"},                    # F .../1-train-puzzle.sh
    "voc12_rs269_occse": {"stage.batch_size": 16, "stage.lr": 0.1, "backbone.output_stride": 16,
                          "stage.augment.color_jitter": True, "stage.occse.relu_before_resize": True,
                          "stage.occse.gather_batch_max": True,  # F scripts/cam/train_occse.py: DataParallel
                          "trainer.precision": "32-true"},                 # F .../1-train-occse.sh
    "voc12_rs269_poc": {"stage.batch_size": 16, "stage.lr": 0.1, "stage.weight_decay": 1e-4,
                        "trainer.accumulate_grad_batches": 1, "stage.occse.relu_before_resize": True,
                        "stage.occse.gather_batch_max": True,  # F scripts/cam/train_poc.py:238,256
                        "trainer.precision": "32-true"},                   # F .../1-train-poc.sh
    "voc12_rs269_pnoc_ls": {"stage.noc.oc_batchnorm": "train",  # F .../1-train-pnoc.sh:60 MODE=normal
                            "stage.noc.leak_generator_loss": False,
                            "stage.label_smoothing": 0.1,                  # F .../1-train-pnoc.sh:163
                            "stage.augment.color_jitter": True,            # F .../1-train-pnoc.sh:92
                            "trainer.precision": "16-mixed"},              # F .../1-train-pnoc.sh:70
    "voc12_rs269_pnoc_ls_leak": {"stage.noc.leak_generator_loss": True},
    "voc12_ccamh_rs269": {"stage.hints.delta_fg": 0.3,  # F 2-saliency/2-inference-ccam.sh:107
                          "stage.hints.label_smoothing": 0.0,  # F 2-saliency/1-train-ccam-hints.sh:62
                          "trainer.precision": "32-true",                  # F 1-train-ccam-hints.sh:61
                          "stage.batch_size": 32,                          # F 1-train-ccam-hints.sh:59
                          "trainer.accumulate_grad_batches": 1,            # F 1-train-ccam-hints.sh:60
                          "stage.pseudo.threshold": 0.2,                   # F 2-inference-ccam.sh:109
                          "stage.pseudo.crf.t": 10,                        # F 2-inference-ccam.sh:88
                          "stage.pseudo.crf.gt_prob": 0.9},                # F 2-inference-ccam.sh:89
    "voc12_poolnet_rn50": {"stage.train_images": "full", "stage.batch_size": 1,
                           "stage.inference.double_small_side": 100,
                           "stage.full_image_min_side": 101, "trainer.accumulate_grad_batches": 10,
                           "stage.loss_reduction": "sum"},
    "voc12_affinity_rs269": {"stage.affinity_labels.fg_threshold": 0.3,  # F 3-rw/1-make-affinity-labels.sh:80
                             "stage.affinity_labels.bg_threshold": 0.1,    # F 1-make-affinity-labels.sh:81
                             "stage.affinity_labels.gt_prob": 0.7,         # F 1-make-affinity-labels.sh:83
                             "stage.batch_size": 32, "stage.lr": 0.1,      # F 3-rw/2-train-affinity.sh:52-53
                             "stage.inference.beta": 10,  # F 2-train-affinity.sh:83
                             "stage.inference.exp_times": 8,  # F 2-train-affinity.sh:84
                             "stage.pseudo_masks.bg_threshold": 0.25,  # F 4-segmentation/1-make-labels.sh:49
                             "stage.pseudo_masks.crf_iterations": 1,       # F 1-make-labels.sh:50
                             "stage.pseudo_masks.gt_prob": 0.9,            # F 1-make-labels.sh:51
                             "trainer.precision": "32-true"},
    "voc12_deeplab_rs269": {"stage.max_epochs": 50,                        # F 4-segmentation/2-train.sh:60
                            "stage.batch_size": 32,                        # F 2-train.sh:61
                            "trainer.accumulate_grad_batches": 1,          # F 2-train.sh:62
                            "trainer.precision": "32-true",                # F 2-train.sh:63
                            "dataset.min_size": 256, "dataset.max_size": 1024,   # F 2-train.sh:66-67
                            "stage.label_smoothing": 0.1,                  # F 2-train.sh:111
                            "stage.augment.color_jitter": False,  # F core/datasets/__init__.py:269-292
                            "stage.momentum": 0.0,
                            "stage.keep_best": True,  # F scripts/segmentation/train.py:234-245
                            "stage.inference.fuse": "logit_sum",  # F scripts/segmentation/inference.py:124
                            "stage.inference.crf.iterations": 1,  # local/4-segmentation/3-inference.sh
                            "stage.inference.crf.gt_prob": 0.9,            # (DOMAIN=test block)
                            "stage.inference.crf.params.bilateral_sxy": 50,      # F tools/ai/demo_utils.py:79
                            "stage.inference.crf.params.bilateral_srgb": 5},
    "voc12_rs269_sep2023": {"trainer.precision": "16-mixed"},              # S 1-priors.sh:74
    "voc12_rs269_pnoc_ls_sep2023": {"stage.noc.oc_batchnorm": "frozen"},   # 9fec251 train_pnoc.py mode="fix"
    "voc12_ccamh_rs269_sep2023": {"stage.hints.delta_fg": 0.4,             # S 2-saliency.sh:66
                                  "stage.hints.label_smoothing": 0.1,      # S 2-saliency.sh:50
                                  "stage.batch_size": 64,                  # S 2-saliency.sh:48
                                  "trainer.accumulate_grad_batches": 2,    # S 2-saliency.sh:49
                                  "trainer.precision": "16-mixed",         # S 2-saliency.sh:52
                                  "stage.pseudo.crf.gt_prob": 0.7},        # S 2-saliency.sh:71
    "voc12_affinity_rs269_sep2023": {"stage.affinity_labels.fg_threshold": 0.4,   # S 3-rw.sh:155
                                     "stage.pseudo_masks.bg_threshold": 0.3},     # S 3-rw.sh:193
    "voc12_deeplab_rs269_sep2023": {"stage.max_epochs": 50,  # S 4-segmentation.sh:57
                                    "stage.batch_size": 16,  # S 4-segmentation.sh:59
                                    "trainer.accumulate_grad_batches": 2,  # S 4-segmentation.sh:60
                                    "stage.label_smoothing": 0.1,  # S 4-segmentation.sh:156
                                    "stage.augment.color_jitter": False,  # S 4-segmentation.sh:157
                                    "trainer.precision": "16-mixed",  # S 4-segmentation.sh:68
                                    "dataset.min_size": 320, "dataset.max_size": 640,
                                    "stage.momentum": 0.0, "stage.inference.fuse": "logits",
                                    "stage.inference.crf.iterations": 10,  # S 4-segmentation.sh:173
                                    "stage.inference.crf.params.bilateral_sxy": 50,
                                    "stage.inference.crf.params.bilateral_srgb": 5},
}


def lookup(cfg, dotted):
    default = 1 if dotted == "trainer.accumulate_grad_batches" else "<missing>"
    return OmegaConf.select(cfg, dotted, default=default)


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_recipe_values(experiment, tmp_path):
    cfg = compose_config(tmp_path / "run", tmp_path / "data", [f"experiment={experiment}"], tiny=False)
    got = {k: lookup(cfg, k) for k in EXPECTED[experiment]}
    for key, want in EXPECTED[experiment].items():
        assert got[key] == (pytest.approx(want) if isinstance(want, float) else want), key
    # every CAM recipe infers as the thesis code (PIL bicubic scales, 16-multiple upsampling, fp32)
    cam_stage = cfg.stage.name not in ("ccam", "affinity", "deeplab", "saliency")
    if experiment.startswith("voc12_rs269") and cam_stage:
        inf = cfg.stage.inference
        assert (inf.image_resize, inf.upsample_stride, inf.fp32) == ("pil_bicubic", 16, True)
    # CAMs, C²AM-H saliency and random-walk maps stored float32, as np.save of the float32 maps upstream
    if cfg.stage.name not in ("deeplab", "saliency"):
        assert cfg.stage.inference.storage == "float32"


@pytest.mark.parametrize("variant", ["voc12_rs269_pnoc_ls", "voc12_ccamh_rs269", "voc12_poolnet_rn50",
                                     "voc12_affinity_rs269", "voc12_deeplab_rs269"])
def test_the_sep2023_chain_has_its_own_run_folders(variant, tmp_path):
    """Both chains can live in one runs folder: each Sept-2023 recipe writes its own run folder and reads the
    artifacts of its own chain."""
    f250 = compose_config(tmp_path / "run", tmp_path / "data", [f"experiment={variant}"], tiny=False)
    sep = compose_config(tmp_path / "run", tmp_path / "data", [f"experiment={variant}_sep2023"], tiny=False)
    assert f250.run_name != sep.run_name
    for key in ("stage.inputs.cams", "stage.inputs.saliency", "stage.inputs.pseudo_saliency"):
        got = OmegaConf.select(sep, key, default=None)
        assert got is None or "/sep2023/" in got, key
