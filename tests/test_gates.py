"""CI gates and sizes: PASS/FAIL/SKIP with measured vs threshold, the tally line, and size parsing."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slim.build.sizes import parse_size
from slim.reporting.ci_gates import MaxSize, MinRatio, RequireVerified, Status, evaluate, gates_from_options
from slim.reporting.report import Report, VerificationSummary

NGINX = Report.load(Path(__file__).parent / "data" / "nginx.slim-report.json")


def report(size=9_813_495, ratio=20.67, verification="passed") -> Report:
    """The demo's report with the figures a gate reads replaced."""
    return dataclasses.replace(NGINX, result=dataclasses.replace(NGINX.result, size=size), reduction_ratio=ratio,
                               verification=VerificationSummary(verification))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("123", 123),
        ("123B", 123),
        ("10MB", 10_000_000),
        ("10 mb", 10_000_000),
        ("1.5GiB", 1_610_612_736),
        ("2KiB", 2048),
        ("1kb", 1000),
        ("3TB", 3 * 10**12),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "10 parsecs", "-5MB", "1e3", "10M"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_no_gate_option_means_no_gates():
    assert gates_from_options(None, None, False) == ()


def test_every_gate_is_reported_and_unset_ones_skip():
    outcome = evaluate(gates_from_options(None, 10_000_000, False), report())
    assert [(r.gate, r.status) for r in outcome.results] == [
        ("fail-under-ratio", Status.SKIP),
        ("max-size", Status.PASS),
        ("require-verified", Status.SKIP),
    ]
    assert outcome.tally() == "Result: PASS [Total:3] [Passed:1] [Failed:0] [Skipped:2]"
    assert not outcome.failed


def test_max_size_fails_with_measured_and_threshold():
    result = MaxSize(5_000_000).check(report())
    assert result.status is Status.FAIL
    assert result.line() == (
        "FAIL  max-size: measured 9,813,495 bytes (9.8 MB), threshold <= 5,000,000 bytes (5.0 MB)"
    )


def test_max_size_is_inclusive():
    assert MaxSize(9_813_495).check(report()).status is Status.PASS


def test_ratio_gate():
    assert MinRatio(20.67).check(report()).status is Status.PASS
    failed = MinRatio(25).check(report())
    assert failed.status is Status.FAIL
    assert failed.line() == "FAIL  fail-under-ratio: measured 20.67x smaller, threshold >= 25x"
    skipped = MinRatio(2).check(report(ratio=None))
    assert skipped.status is Status.SKIP and "no reduction ratio" in skipped.line()


@pytest.mark.parametrize("status, expected", [("passed", Status.PASS), ("failed", Status.FAIL),
                                               ("skipped", Status.FAIL)])
def test_require_verified(status, expected):
    # Verification skipped with --no-verify cannot satisfy a gate that requires it.
    assert RequireVerified(True).check(report(verification=status)).status is expected


def test_tally_counts_failures():
    outcome = evaluate(gates_from_options(30, 1000, True), report(verification="failed"))
    assert outcome.failed
    assert outcome.tally() == "Result: FAIL [Total:3] [Passed:0] [Failed:3] [Skipped:0]"
    assert outcome.as_dict()["result"] == "FAIL"
