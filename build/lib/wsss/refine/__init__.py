"""Refinement of CAMs into pseudo masks: dense CRF, affinity labels, pixel pairs, random walk.

Submodules are imported explicitly (`from wsss.refine.crf import crf_labels`); this package imports
nothing so that CRF pool workers start without loading torch.
"""
