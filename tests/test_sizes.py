"""The original's compressed size: measured whole for small layers, estimated from samples for big ones."""
import gzip
import itertools
import tarfile
from pathlib import Path

import pytest

from slim.build import sizes
from slim.build.sizes import ESTIMATED, GZIP_LEVEL, MEASURED, BackgroundGzip, StreamedGzip
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


def fed(stream: bytes, sizes=(1, 511, 4096, 1 << 20, 300_000, 262_145)) -> StreamedGzip:
    """`stream` fed in chunks of uneven sizes, as the layer's chunks are."""
    gzip_size = StreamedGzip(len(stream))
    position, sizes = 0, itertools.cycle(sizes)
    while position < len(stream):
        size = next(sizes)
        gzip_size.feed(stream[position:position + size])
        position += size
    return gzip_size


def test_a_big_stream_is_estimated_from_the_samples_its_file_would_give(layer_tars, tmp_path):
    stream = b"".join(tar.read_bytes() for tar in layer_tars)
    (tmp_path / "joined.tar").write_bytes(stream)
    from_file = BackgroundGzip([TarOnDisk(tmp_path / "joined.tar")]).result()
    compressed, by = fed(stream).result()
    assert (compressed, by) == (from_file.compressed_size, ESTIMATED)
    assert compressed == pytest.approx(len(gzip.compress(stream, GZIP_LEVEL)), rel=0.05)


def test_a_stream_no_bigger_than_the_samples_is_measured_whole():
    stream = b"".join(path.read_bytes() for path in sorted(Path("/usr/share/perl5").rglob("*.pm"))[:400])
    assert fed(stream).result() == (len(gzip.compress(stream, GZIP_LEVEL, mtime=0)), MEASURED)


def test_closing_a_stream_half_fed_stops_its_thread():
    gzip_size = StreamedGzip(10 * sizes.SAMPLES * sizes.SAMPLE)
    gzip_size.feed(b"x" * sizes.SAMPLE)
    gzip_size.close()
    with pytest.raises(RuntimeError):
        gzip_size.result()
