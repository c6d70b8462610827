import pytest

from mlbench.training.scoring import olympic_score


def test_olympic_drops_fastest_and_slowest():
    s = olympic_score([10.0, 12.0, 11.0, 30.0, 9.0])
    assert s.minutes == pytest.approx((10 + 11 + 12) / 3)
    assert s.method.startswith("olympic") and s.reason == ""


def test_one_non_converged_run_counts_as_slowest():
    s = olympic_score([10.0, None, 11.0, 12.0, 9.0])
    # None is the slowest and dropped, as is the fastest (9): mean of 10, 11, 12
    assert s.minutes == pytest.approx(11.0)
    assert s.converged == 4


def test_two_non_converged_runs_have_no_score():
    s = olympic_score([10.0, None, None, 12.0, 9.0])
    assert s.minutes is None and "at most one" in s.reason


def test_few_runs_plain_mean_labelled():
    s = olympic_score([10.0, 14.0])
    assert s.minutes == 12.0 and "fewer than 3" in s.method and "2 run(s) of the 5" in s.reason
    assert olympic_score([None]).minutes is None
    assert olympic_score([]).minutes is None
