"""The classifier recipes of the XAI benchmark (thesis A.1.2) compose with the values the thesis states."""
import pytest

RECIPES = {  # experiment: (dataset, backbone, input size)
    "xai_voc07_vgg16": ("voc07", "vgg16", 224),
    "xai_voc07_resnet101": ("voc07", "resnet101", 512),
    "xai_voc07_efficientnet_b6": ("voc07", "efficientnet_b6", 512),
    "xai_coco17_resnet101": ("coco17", "resnet101", 512),
    "xai_planet_resnet101": ("planet", "resnet101", 512),
    "xai_hpa_resnet101": ("hpa", "resnet101", 512),
}


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_recipe_composes_with_the_thesis_values(make_cfg, experiment):
    dataset, backbone, size = RECIPES[experiment]
    cfg = make_cfg(f"experiment={experiment}", tiny=False)
    assert (cfg.dataset.name, cfg.backbone.name, cfg.stage.name) == (dataset, backbone, "classifier")
    assert cfg.dataset.crop_size == cfg.dataset.min_size == cfg.dataset.max_size == size
    s = cfg.stage
    assert s.lr == 0.01 and s.lr * s.lr_alpha_new == pytest.approx(0.1)  # backbone 0.01, head 0.1
    assert s.momentum == 0.9 and s.nesterov and s.max_epochs == 80 and s.label_smoothing == 0.0
    assert not (s.augment.randaugment or s.augment.color_jitter or s.augment.hflip)
    assert list(s.tasks) == ["fit"] and cfg.backbone.pretrained
    assert cfg.dataset.get("in_chans", 3) == (4 if dataset == "hpa" else 3)
