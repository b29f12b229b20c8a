"""Refinement of CAMs into pseudo masks: affinity labels, random walk, and the tasks that write them.

The dense CRF, the pixel pairs and the process pool they use are in wsss.ops. Submodules are imported
explicitly (`from wsss.refine.affinity_labels import affinity_labels`); this package imports nothing so that
pool workers start without loading torch.
"""
