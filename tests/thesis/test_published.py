"""The published-values file: complete and consistent with the thesis's own arithmetic; the XAI tables' match."""
import statistics

import pytest

from wsss.thesis import published, value

CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def test_every_table_is_there():
    tables = {t for t, _, _ in published()}
    assert tables == set(range(2, 12))
    assert value(2, "P-NOC+LS+C2AM-H", "test") == 72.7
    assert value(7, "RS269 P-NOC+LS", "TTA") == 62.7
    assert value(11, "P-NOC", "bicycle") == 35.2


def test_table7_max_is_the_max_of_the_epochs():
    rows = {r for t, r, _ in published() if t == 7}
    assert len(rows) == 10
    for row in rows:
        assert value(7, row, "Max") == max(value(7, row, f"E{i}") for i in range(1, 16)), row


@pytest.mark.parametrize("table,rows,column_of", [
    (8, ["RA", "P", "Pf", "P-OC", "P-OC+LS", "P-NOC+LS"], lambda row: ("overall", row)),
    (11, ["AffinityNet", "OC-CSE", "AMN", "ViT-PCM", "MCTformer", "P-OC", "P-NOC"], lambda row: (row, "mIoU")),
])
def test_per_class_tables_average_to_their_miou(table, rows, column_of):
    for row in rows:
        if table == 8:
            per_class = [value(8, c, row) for c in CLASSES]
        else:
            per_class = [value(11, row, c) for c in CLASSES]
        assert statistics.mean(per_class) == pytest.approx(value(table, *column_of(row)), abs=0.1), row
