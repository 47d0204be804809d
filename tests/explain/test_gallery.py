from cxrssl.explain.gallery import pick_correct_positives, pick_errors

LABELS = ["P", "N", "P", "N", "P", "N", "P"]
ROWS = [0, 1, 2, 3, 4, 5, 6]
SCORES = [0.9, 0.8, 0.3, 0.1, 0.7, 0.6, 0.05]


def test_correct_positives_most_confident_first():
    assert [(p.index, p.score) for p in pick_correct_positives(LABELS, ROWS, SCORES, "P", 5)] == [(0, 0.9), (4, 0.7)]


def test_errors_are_confident_false_positives_then_false_negatives():
    picks = pick_errors(LABELS, ROWS, SCORES, "P", 4)
    assert [p.index for p in picks] == [1, 5, 6, 2]  # FP 0.8, 0.6; FN 0.05, 0.3
    assert picks[0].caption.startswith("false positive (N)") and picks[2].caption.startswith("false negative (P)")
    assert [p.index for p in pick_errors(LABELS, ROWS, SCORES, "P", 3)] == [1, 6, 2]  # count//2 = 1 FP, rest FN
