"""bench's pure logic: stats, the floor, wrk parsing, tables, targets. No engine, no timing assertions."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from bench import cli, scaling
from bench.model import BenchRun, ImageResult, Machine, OverheadResult, OverheadRound, ScalingPoint
from bench.measure import run_measured, snapshot_sources
from bench.overhead import parse_wrk
from bench.render import markdown, table, to_json
from bench.stats import floor_bytes, human_bytes, linear_fit, median_index, paired_ratios, ratio, summarize
from bench.targets import MET, MISSED, NOT_MEASURED, evaluate

MACHINE = Machine(
    cores=2, memory_bytes=24 * 2**30, kernel="6.1.0", os="Debian GNU/Linux 12 (bookworm)",
    engine_version="20.10.24", storage_driver="overlay2", python="3.11.2", slimtrace_version="0.1.0",
    commit="abc123", source_digest="0123456789ab",
)


def kept(path, size, *reasons, kind="file"):
    return {"path": path, "kind": kind, "size": size, "reasons": [{"kind": r, "source": ""} for r in reasons]}


# ---------------------------------------------------------------- stats and the floor


def test_summarize_gives_mean_sample_stdev_and_range():
    stats = summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert (stats.n, stats.mean, stats.median, stats.min, stats.max) == (8, 5.0, 4.5, 2.0, 9.0)
    assert stats.stdev == pytest.approx(2.138, abs=1e-3)


def test_summarize_one_value_has_no_spread_and_none_is_an_error():
    assert summarize([3.0]).stdev == 0.0
    with pytest.raises(ValueError):
        summarize([])


def test_paired_ratios_are_round_by_round():
    assert paired_ratios([90.0, 110.0], [100.0, 100.0]) == [0.9, 1.1]
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])


def test_floor_counts_files_the_run_opened_or_looked_up():
    report = {"kept": [
        kept("/usr/sbin/nginx", 1000, "entrypoint", "traced"),  # traced, though not its main reason
        kept("/lib/libc.so.6", 500, "traced"),
        kept("/lib/libz.so.1", 300, "elf-needed"),  # kept by the closure, never opened: above the floor
        kept("/etc", 0, "traced", kind="dir"),
        kept("/etc/passwd", 40, "always-kept"),
        kept("/usr/lib/python3.11/os.py", 200, "import", "looked-up"),  # stat'ed beside its .pyc: needed whole
    ]}
    assert floor_bytes(report) == 1700
    assert floor_bytes({}) == 0


def test_ratio_and_fit_handle_missing_values():
    assert ratio(10, 4) == 2.5
    assert ratio(None, 4) is None and ratio(10, 0) is None
    slope, intercept = linear_fit([0.1, 1.0, 5.0], [3.0, 12.0, 52.0])
    assert slope == pytest.approx(10.0) and intercept == pytest.approx(2.0)
    assert linear_fit([1.0, 1.0], [2.0, 3.0]) is None


def test_human_bytes_uses_decimal_units():
    sizes = (None, 999, 9_813_495, 202_830_036, 5_123_000_000)
    assert [human_bytes(n) for n in sizes] == ["–", "999 B", "9.81 MB", "202.8 MB", "5.12 GB"]


# ---------------------------------------------------------------- wrk


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:49153/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.01ms    2.10ms  40.12ms   80.00%
    Req/Sec     2.29k   150.00     2.60k    70.00%
  45678 requests in 10.00s, 37.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   4567.80
Transfer/sec:      3.71MB
"""


def test_parse_wrk_reads_rate_and_errors():
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests_per_second, result.errors) == (4567.8, 7)


def test_parse_wrk_without_a_rate_says_what_it_got():
    with pytest.raises(ValueError, match="Requests/sec"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


# ---------------------------------------------------------------- tables and targets


def test_table_aligns_and_escapes_pipes():
    assert table(("a", "b"), [("x|y", 1)], "lr") == "| a | b |\n| --- | --: |\n| x\\|y | 1 |"


def sample_run(**changes) -> BenchRun:
    images = (
        ImageResult("nginx", "fx/nginx:1", "web", original_size=200_000_000, original_files=6723,
                    slimmed_size=10_000_000, compressed_size=4_000_000, files_kept=25, floor=9_900_000,
                    verification="passed", functional="same (5 checks)", functional_ok=True,
                    timings={"inspect": 0.01, "index": 4.2, "trace": 2.1}, wall_seconds=10.5,
                    wall_runs=(11.2, 10.5, 9.8), peak_rss=61_000_000),
        ImageResult("redis", "fx/redis:1", "kv", original_size=131_000_000, slimmed_size=17_900_000,
                    floor=17_800_000, verification="passed"),
        ImageResult("pyapp", "fx/pyapp:1", "web", error="Error: probe failed"),
    )
    rounds = (OverheadRound(1, "untraced", 1000.0, 950.0, opens_only_rps=990.0),
              OverheadRound(2, "traced", 1000.0, 930.0, opens_only_rps=970.0))
    result = OverheadResult(
        image="fx/nginx:1", command="wrk ...", rounds=rounds, untraced=summarize([1000.0, 1000.0]),
        traced=summarize([950.0, 930.0]), ratio=summarize([0.95, 0.93]), trace_events=(22, 24),
        opens_only=summarize([990.0, 970.0]), opens_only_ratio=summarize([0.99, 0.97]),
    )
    points = (
        ScalingPoint(1000, 100_000_000, "s:1", image_size=217_000_000, wall_seconds=8.0, peak_rss=60_000_000,
                     timings={"index": 3.0}, verification="passed"),
        ScalingPoint(1000, 5_000_000_000, "s:5", image_size=5_117_000_000, wall_seconds=120.0,
                     peak_rss=310_000_000, verification="passed"),
    )
    run = BenchRun(date="2026-01-02T03:04:05+00:00", machine=MACHINE, options={"rounds": 2}, images=images,
                   overhead=result, scaling=points, total_seconds=600.0)
    return BenchRun(**{**run.__dict__, **changes})


def test_targets_compare_measured_with_the_goals():
    rows = {(row.goal.split()[0], row.subject): row for row in evaluate(sample_run())}
    assert rows[("ratio", "nginx")].status == MET
    assert rows[("ratio", "redis")].status == MISSED  # 7.3x
    assert rows[("ratio", "redis")].measured == "7.3x, passed (the floor allows 7.4x)"
    assert rows[("ratio", "pyapp")].status == NOT_MEASURED
    assert rows[("ratio", "nodeapp")].status == NOT_MEASURED  # not in the run
    assert rows[("slimmed", "nginx")].status == MET
    assert rows[("traced/untraced", "nginx under wrk")].status == MISSED  # 0.94 < 0.95
    memory = [row for row in evaluate(sample_run()) if row.goal.startswith("peak RSS")]
    assert [row.status for row in memory] == [MISSED]  # 310 MB, only the 5 GB point counts


def test_speed_targets_compare_wall_times_with_the_issues_goals_and_dockerslims_figures():
    rows = {(row.goal, row.subject): row for row in evaluate(sample_run())}
    assert rows[("nginx with verification <= 4 s wall", "nginx")].measured == "10.50 s, passed"
    assert rows[("nginx with verification <= 4 s wall", "nginx")].status == MISSED
    dockerslim = "wall <= 0.5x DockerSlim 1.40.11 (the issue's figure)"
    assert rows[(dockerslim, "nginx")].measured == "10.5 s vs 11.8 s: 0.89x"
    assert rows[(dockerslim, "nginx")].status == MISSED
    assert rows[(dockerslim, "redis")].status == NOT_MEASURED  # no wall time in the sample
    assert rows[("<= 20 s wall", "synthetic 5 GB")].status == MISSED  # 120 s
    assert rows[("<= 8 s wall", "synthetic 100k files")].status == NOT_MEASURED
    slope = rows[("build time over image size <= 3 s per GB", "synthetic 1,000 files")]
    assert slope.measured == "22.9 s per GB (2 sizes)" and slope.status == MISSED
    fast = sample_run(images=(dataclasses.replace(sample_run().images[0], wall_seconds=3.9, wall_runs=(3.9,)),))
    assert {row.status for row in evaluate(fast) if row.subject == "nginx" and "wall" in row.goal} == {MET}
    assert "| nginx | 3.90 | 3.90 | nginx | 11.8 | 0.33x |" in markdown(fast)


def test_targets_without_overhead_or_scaling_are_not_measured():
    rows = evaluate(sample_run(overhead=None, overhead_error="wrk missing", scaling=()))
    statuses = {row.goal.split()[0]: row for row in rows}
    assert statuses["traced/untraced"].status == NOT_MEASURED
    assert statuses["traced/untraced"].measured == "wrk missing"
    assert statuses["peak"].status == NOT_MEASURED


def test_markdown_has_every_section_and_the_json_round_trips():
    text = markdown(sample_run(), "2026-01-02-scaling.png")
    for heading in ("## Corpus: size", "## Corpus: build time and memory", "## Tracing overhead",
                    "## Scaling", "## Targets"):
        assert heading in text
    assert "| nginx | 200.0 MB | 10.0 MB | 4.00 MB | 20.0x | 6,723 → 25 | 9.90 MB | 1.01x | passed |" in text
    assert "error: Error: probe failed" in text
    assert "| 1 | untraced | 1,000 | 950 | 0.950 | 990 | 0.990 | 0 / 0 / 0 | – |" in text
    assert "| opens only / untraced (per round) | 0.980 | 0.980 | 0.014 | 0.970 | 0.990 |" in text
    assert "![build time and peak memory against image size](2026-01-02-scaling.png)" in text
    assert "| nginx | 10.5 | 11.2, 10.5, 9.80 | nginx | 11.8 | 0.89x |" in text
    data = json.loads(json.dumps(to_json(sample_run())))
    assert data["images"][0]["ratio"] == 20.0
    assert data["overhead"]["ratio_of_means"] == pytest.approx(0.94)
    assert {row["status"] for row in data["targets"]} >= {MET, MISSED, NOT_MEASURED}


# ---------------------------------------------------------------- command line and synthetic images


def test_only_selects_corpus_images_in_corpus_order():
    arguments = cli.parse_args(["--only", "redis,nginx", "--quick"])
    assert arguments.names == ("nginx", "redis")
    assert arguments.rounds == cli.QUICK_ROUNDS
    assert arguments.builds == 1
    assert cli.parse_args([]).builds == cli.DEFAULT_BUILDS
    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "nosuch"])


def test_the_build_shown_is_the_one_of_median_wall_time():
    assert median_index([3.1, 2.4, 2.9]) == 2
    assert median_index([2.5]) == 0
    assert median_index([3.0, 1.0, 4.0, 2.0]) == 3  # the lower of the two middle ones
    with pytest.raises(ValueError):
        median_index([])


def test_synthetic_dockerfile_names_the_files_its_app_reads():
    size = scaling.Size(10_000, 100_000_000)
    text = scaling.dockerfile("base:1", size)
    assert text.startswith("FROM base:1\n")
    assert "generate-data 10000 100000000" in text
    assert '"/data/000/f0000"' in text  # split -a 4 -d names the first file f0000
    assert size.tag == "slimtrace-bench/synthetic:10000f-100MB"
    assert scaling.Size(1000, 5_000_000_000).tag.endswith(":1000f-5GB")


def test_stage_columns_follow_the_pipeline_then_new_stages():
    from bench.model import STAGES, stage_names

    assert stage_names([{"verify": 1.0, "measure": 2.0}, {"index": 1.0, "sign": 0.1}]) == (*STAGES, "measure", "sign")


def test_the_snapshot_builds_run_from_is_byte_compiled_as_an_installed_package(tmp_path):
    """Builds start from bytecode, as `pip install` leaves slimtrace, even where bytecode is not written."""
    root = Path(__file__).resolve().parent.parent
    snapshot = snapshot_sources(root, tmp_path / "source")
    sources = sorted((snapshot / "slim").rglob("*.py")) + sorted((snapshot / "probes").rglob("*.py"))
    assert len(sources) == len(list((root / "slim").rglob("*.py"))) + len(list((root / "probes").rglob("*.py")))
    assert [path for path in sources if not Path(importlib.util.cache_from_source(str(path))).is_file()] == []


def test_a_measured_run_reports_its_exit_and_output_and_one_past_its_deadline_is_terminated():
    exit_code, _wall, peak_rss, output = run_measured(["sh", "-c", "echo built; exit 3"], timeout=60)
    assert (exit_code, output, peak_rss > 0) == (3, "built\n", True)
    assert run_measured(["sleep", "60"], timeout=0.2)[0] == -15  # SIGTERM: slim cleans up as on Ctrl-C
