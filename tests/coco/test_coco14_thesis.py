"""The thesis's COCO 2014 number (36.4 % DeepLab val mIoU, the P-OC chain) goes beside ours only for that
chain."""
from omegaconf import OmegaConf

from wsss.thesis import COCO14_POC_DEEPLAB_VAL, beside, coco14_counterpart


def run_folder(tmp_path, name: str, stage: dict, artifact: str):
    folder = tmp_path / name
    (folder / artifact).mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"dataset": {"name": "coco14"}, "stage": stage}), folder / "config.yaml")
    return str(folder / artifact)


def deeplab_on(tmp_path, cams_stage: str, dataset: str = "coco14") -> dict:
    cams = run_folder(tmp_path, cams_stage, {"name": cams_stage}, "cams")
    masks = run_folder(tmp_path, "affinity", {"name": "affinity", "inputs": {"cams": cams}}, "pseudo_masks")
    return {"dataset": {"name": dataset}, "stage": {"name": "deeplab", "masks": masks}}


def test_only_the_p_oc_chain_on_coco14_val_gets_36_4(tmp_path):
    poc = deeplab_on(tmp_path / "a", "poc")
    assert coco14_counterpart(poc, "val2014") == COCO14_POC_DEEPLAB_VAL == 36.4
    assert coco14_counterpart(poc, "train2014") is None
    assert coco14_counterpart(deeplab_on(tmp_path / "b", "pnoc"), "val2014") is None
    assert coco14_counterpart(deeplab_on(tmp_path / "c", "poc", dataset="voc12"), "val2014") is None
    assert coco14_counterpart({**poc, "stage": {"name": "deeplab", "masks": "gt"}}, "val2014") is None
    out = beside("predictions/val2014", 0.30, coco14_counterpart(poc, "val2014"))
    assert abs(out["predictions/val2014/thesis_miou"] - 0.364) < 1e-12
    assert abs(out["predictions/val2014/thesis_diff"] - (0.30 - 0.364)) < 1e-12
