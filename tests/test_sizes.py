"""The original's compressed size: measured whole for small layers, estimated from samples for big ones."""
import gzip
import tarfile
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
