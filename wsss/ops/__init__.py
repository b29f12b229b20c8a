"""Low-level pieces the stages and their evaluations share: dense CRF, pixel-pair indices, an ordered
process pool.

The lowest package of wsss: it imports nothing of wsss. Submodules are imported explicitly
(`from wsss.ops.crf import crf_labels`); this package imports nothing so that pool workers start without
loading torch.
"""
