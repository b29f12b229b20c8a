"""The voc12 recipes carry the thesis code's values (lucasdavid/PNOC@f250e0d runners; DeepLab @42e611d)."""
import pytest
from omegaconf import OmegaConf

from tests.helpers import compose_config

EXPECTED = {
    "voc12_rs269_pf": {"stage.batch_size": 32, "stage.lr": 0.1, "stage.augment.color_jitter": True},
    "voc12_rs269_occse": {"stage.batch_size": 16, "stage.lr": 0.1, "backbone.output_stride": 16,
                          "stage.augment.color_jitter": True, "stage.occse.relu_before_resize": True},
    "voc12_rs269_poc": {"stage.batch_size": 16, "stage.lr": 0.1, "stage.weight_decay": 1e-4,
                        "trainer.accumulate_grad_batches": 1, "stage.occse.relu_before_resize": True},
    "voc12_rs269_pnoc_ls": {"stage.noc.oc_batchnorm": "train", "stage.noc.leak_generator_loss": False,
                            "stage.label_smoothing": 0.1, "stage.augment.color_jitter": True},
    "voc12_rs269_pnoc_ls_leak": {"stage.noc.leak_generator_loss": True},
    "voc12_poolnet_rn50": {"stage.train_images": "full", "stage.batch_size": 1,
                           "stage.inference.double_small_side": 100,
                           "stage.full_image_min_side": 101, "trainer.accumulate_grad_batches": 10,
                           "stage.loss_reduction": "sum"},
    "voc12_deeplab_rs269": {"stage.max_epochs": 50, "stage.batch_size": 16, "trainer.accumulate_grad_batches": 2,
                            "stage.momentum": 0.0, "stage.label_smoothing": 0.0, "stage.augment.color_jitter": False,
                            "stage.inference.fuse": "logits", "stage.inference.crf.params.bilateral_sxy": 50,
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
    if "rs269_" in experiment:
        inf = cfg.stage.inference
        assert (inf.image_resize, inf.upsample_stride, inf.fp32) == ("pil_bicubic", 16, True)
