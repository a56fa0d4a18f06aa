"""The original's compressed size: measured whole for small layers, estimated from samples for big ones."""
import gzip
import os
import tarfile
import time
from pathlib import Path

import pytest

from slim.build import sizes
from slim.build.sizes import ESTIMATED, GZIP_LEVEL, MEASURED, BackgroundGzip
from slim.image.rootfs import TarOnDisk

# Real, varied bytes: the host's own libraries and programs (ELF, text, data), as image layers hold.
HOST_TREES = ("/usr/share/perl", "/usr/lib/x86_64-linux-gnu/gconv", "/usr/lib/python3/dist-packages")


@pytest.fixture(scope="module")
def layer_tars(tmp_path_factory) -> list[Path]:
    directory = tmp_path_factory.mktemp("layers")
    tars = []
    for number, tree in enumerate(HOST_TREES):
        tar_path = directory / f"{number}.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(tree, recursive=True)
        tars.append(tar_path)
    return tars


@pytest.fixture(scope="module")
def gzip_size(layer_tars) -> int:
    return sum(len(gzip.compress(tar.read_bytes(), GZIP_LEVEL)) for tar in layer_tars)


def test_big_layers_are_estimated_closely_from_samples(layer_tars, gzip_size):
    assert sum(tar.stat().st_size for tar in layer_tars) > sizes.SAMPLES * sizes.SAMPLE
    estimated = BackgroundGzip([TarOnDisk(tar) for tar in layer_tars]).result()
    assert estimated.compressed_by == ESTIMATED
    assert estimated.size == sum(tar.stat().st_size for tar in layer_tars)
    assert estimated.compressed_size == pytest.approx(gzip_size, rel=0.05)


def test_layers_no_bigger_than_the_samples_are_measured_whole(tmp_path):
    layer = tmp_path / "small.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add("/usr/share/perl5", recursive=True)
    figure = BackgroundGzip([TarOnDisk(layer)]).result()
    assert figure.compressed_by == MEASURED
    assert abs(figure.compressed_size - len(gzip.compress(layer.read_bytes(), GZIP_LEVEL))) <= 64


def test_the_figure_is_worked_out_by_a_child_at_the_lowest_priority_until_it_is_waited_for(
        layer_tars, tmp_path, monkeypatch):
    """The child is set to nice 19 as it starts, is given this process's priority once the figure is asked
    for (it notes both here, waiting for each), and gives the figure this process would have worked out."""
    priorities = tmp_path / "priorities"
    work, here = sizes.gzip_size, os.getpriority(os.PRIO_PROCESS, 0)

    def note() -> None:
        with priorities.open("a") as log:
            log.write(f"{os.getpid()} {os.getpriority(os.PRIO_PROCESS, 0)}\n")

    def noted(tars):
        deadline = time.monotonic() + 10
        while os.getpriority(os.PRIO_PROCESS, 0) == here and time.monotonic() < deadline:
            time.sleep(0.01)  # the parent sets it just after the fork
        note()
        while os.getpriority(os.PRIO_PROCESS, 0) != here:
            time.sleep(0.01)
        note()
        return work(tars)

    monkeypatch.setattr(sizes, "gzip_size", noted)
    tars = [TarOnDisk(tar) for tar in layer_tars]
    background = BackgroundGzip(tars)
    while not priorities.exists() or not priorities.read_text():
        time.sleep(0.01)  # the child has started
    figure = background.result()
    (pid, started), (same_pid, ended) = (line.split() for line in priorities.read_text().splitlines())
    assert int(pid) == int(same_pid) != os.getpid()
    assert (int(started), int(ended)) == (here + sizes.LOWEST_PRIORITY, here)
    assert figure == work(tars)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the child was reaped


def test_a_child_hurried_before_the_figure_is_asked_for_works_it_out_at_this_process_priority(
        layer_tars, tmp_path, monkeypatch):
    """What a build does while it only waits on the slimmed container: the figure is then ready sooner."""
    here = os.getpriority(os.PRIO_PROCESS, 0)
    hurried = tmp_path / "hurried"

    def at_full_priority(tars):
        while os.getpriority(os.PRIO_PROCESS, 0) != here:
            time.sleep(0.01)
        hurried.write_text("yes")
        return sizes.LayerSizes(len(tars), 1, 1)

    monkeypatch.setattr(sizes, "gzip_size", at_full_priority)
    background = BackgroundGzip([TarOnDisk(tar) for tar in layer_tars])
    background.hurry()
    for _ in range(1000):
        if hurried.exists():
            break
        time.sleep(0.01)
    assert hurried.read_text() == "yes"  # before anyone asked for the figure
    assert background.result() == sizes.LayerSizes(len(layer_tars), 1, 1)
    background.hurry()  # the child is gone: nothing to do


def test_a_child_that_dies_leaves_the_figure_to_this_process(layer_tars, monkeypatch):
    here, work = os.getpid(), sizes.gzip_size
    monkeypatch.setattr(sizes, "gzip_size", lambda tars: work(tars) if os.getpid() == here else os.kill(os.getpid(), 9))
    tars = [TarOnDisk(tar) for tar in layer_tars]
    assert BackgroundGzip(tars).result() == work(tars)


def test_with_no_process_to_be_had_the_figure_is_worked_out_here(tmp_path, monkeypatch):
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    layer = tmp_path / "small.tar"
    layer.write_bytes(b"x" * 10_000)
    assert BackgroundGzip([TarOnDisk(layer)]).result().compressed_size == len(gzip.compress(b"x" * 10_000, GZIP_LEVEL))


def test_closing_ends_the_child_and_leaves_no_figure(layer_tars):
    figure = BackgroundGzip([TarOnDisk(tar) for tar in layer_tars])
    figure.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # killed and reaped, not left to finish
    with pytest.raises(RuntimeError):
        figure.result()
