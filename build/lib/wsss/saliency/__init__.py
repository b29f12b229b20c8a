"""Saliency maps (C²AM / C²AM-H / PoolNet): TTA inference, pseudo-saliency, Table-9 evaluation.

Importing `wsss.saliency.tasks` registers the tasks `predict_saliency`, `pseudo_saliency` and
`evaluate_saliency` (the stage modules `wsss.stages.ccam` and `wsss.stages.saliency` do it).
"""
