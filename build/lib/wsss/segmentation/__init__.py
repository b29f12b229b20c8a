"""Semantic segmentation (stage 4): multi-scale + flip inference, CRF post-processing, pseudo masks from
CAMs, mIoU tables and the VOC test-server export.

Submodules are imported explicitly; this package imports nothing so that CRF pool workers (which
unpickle `wsss.segmentation.crf_pool` functions) start without loading torch.
"""
