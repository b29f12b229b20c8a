"""VGG16-GAP as in the MinMax-CAM notebooks: the GAP classifier on block5_pool (stride 32, 7×7 at 224 px)."""
import torch
import torch.nn.functional as F

from wsss.models.backbone import Backbone
from wsss.models.cam_head import CAMNet


def test_vgg16_explained_layer_is_block5_pool():
    backbone = Backbone("vgg16", pretrained=False, output_stride=None).eval()
    assert backbone.stride == 32 and backbone.out_channels == 512
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    assert features[-1].shape == (1, 512, 7, 7)
    assert features[-2].shape == (1, 512, 14, 14)  # conv5_3 after its ReLU
    torch.testing.assert_close(features[-1], F.max_pool2d(features[-2], 2))  # block5_pool of conv5_3
    _, cams = CAMNet(backbone, 20).eval()(torch.zeros(1, 3, 224, 224))
    assert cams.shape == (1, 20, 7, 7)
