import numpy as np
import pytest

from xception_cli.labels import class_index, top_k


def test_class_index_ships_with_the_package():
    idx = class_index()
    assert len(idx) == 1000
    assert idx[0] == ("n01440764", "tench") and idx[281] == ("n02123045", "tabby")
    assert len({label for _, label in idx}) == 998  # 'crane' and 'maillot' appear twice
    assert len({wnid for wnid, _ in idx}) == 1000


def test_top_k_orders_and_describes():
    p = np.zeros((2, 1000), np.float32)
    p[0, [281, 285, 7]] = [0.5, 0.3, 0.2]
    p[1, 134], p[1, 517] = 0.6, 0.4  # the two 'crane's: told apart by index and wnid
    a, b = top_k(p, 3)
    assert [(x.rank, x.index, x.label) for x in a] == [(1, 281, "tabby"), (2, 285, "Egyptian_cat"), (3, 7, "cock")]
    assert a[0].wnid == "n02123045" and a[0].probability == pytest.approx(0.5)
    assert [(x.index, x.label) for x in b[:2]] == [(134, "crane"), (517, "crane")]
    assert b[0].wnid != b[1].wnid


def test_ties_break_by_lower_index():
    p = np.full((1, 1000), 0.001, np.float32)
    assert [x.index for x in top_k(p, 4)[0]] == [0, 1, 2, 3]


def test_k_below_one_is_an_error_and_above_the_classes_is_capped():
    with pytest.raises(ValueError, match="top_k must be at least 1, got 0"):
        top_k(np.zeros((1, 1000)), 0)
    assert len(top_k(np.zeros((1, 1000)), 1001)[0]) == 1000  # as `-k` with a model of 3 classes gives 3
    (row,) = top_k(np.array([[0.2, 0.5, 0.3]]), 5, labels=["a", "b", "c"])
    assert [(p.label, p.wnid) for p in row] == [("b", None), ("c", None), ("a", None)]


def test_to_dict_schema():
    p = np.zeros((1, 1000))
    p[0, 281] = 1
    assert top_k(p, 1)[0][0].to_dict() == {
        "rank": 1, "index": 281, "wnid": "n02123045", "label": "tabby", "probability": 1.0
    }
