"""Plain-Python reference values shared by the loss tests."""
import math


def mlsm_by_hand(logits, targets, smoothing=0.0):
    """Mean over batch of the mean over classes of BCE-with-logits vs (1-eps) y + eps/2, in plain Python."""
    total = 0.0
    for row_z, row_y in zip(logits, targets):
        per_class = []
        for z, y in zip(row_z, row_y):
            t = (1 - smoothing) * y + smoothing / 2
            p = 1 / (1 + math.exp(-z))
            per_class.append(-(t * math.log(p) + (1 - t) * math.log(1 - p)))
        total += sum(per_class) / len(per_class)
    return total / len(logits)
