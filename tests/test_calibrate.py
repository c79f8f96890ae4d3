"""The `unsure` threshold: the least confident answers are flagged until half of the errors are,
but never more than MAX_FLAGGED of all answers, and never a threshold below the floor."""

import torch

from digitrec.calibrate import unsure_threshold


def answers(confidences: list[float], right: list[bool]):
    """(probs, labels) of three-class answers with these confidences, right or wrong."""
    conf = torch.tensor(confidences)
    probs = torch.stack([conf, (1 - conf) / 2, (1 - conf) / 2], 1)  # the answer is class 0
    return probs, torch.tensor([0 if ok else 1 for ok in right])


def test_half_of_the_errors_are_flagged():
    conf = [0.55, 0.6, 0.7, 0.8, 0.9] + [0.99] * 995
    right = [False, True, False, True, False] + [True] * 995
    got = unsure_threshold(*answers(conf, right), max_flagged=1.0)
    assert 0.7 < got["threshold"] <= 0.7 + 1e-5  # the 0.55 and 0.7 errors: 2 of 3 is at least half
    assert abs(got["flagged"] - 3 / 1000) < 1e-6 and abs(got["errors_caught"] - 2 / 3) < 1e-6


def test_the_cap_on_flagged_answers_wins():
    conf = [0.6 + 0.001 * i for i in range(100)] + [0.999] * 900
    right = [i % 2 == 0 for i in range(100)] + [False] * 10 + [True] * 890  # errors up at the top too
    got = unsure_threshold(*answers(conf, right), max_flagged=0.01)
    assert got["flagged"] <= 0.011, "half of the errors would flag many more answers than 1%"
    assert got["errors_caught"] < 0.5


def test_the_floor():
    got = unsure_threshold(*answers([0.4, 0.99, 0.99, 0.99], [False, True, True, True]), max_flagged=1.0)
    assert got["threshold"] == 0.5 and got["flagged"] == 0.25
