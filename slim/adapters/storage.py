"""Where an engine on this machine keeps an image's layers, for reading them in place.

Two layouts are known, both overlay directories plus the tar-split record the engine itself streams
`docker save` from (so what we read is byte for byte what an export would give):

- Docker's overlay2: `<root>/image/overlay2/layerdb/sha256/<chain id>/` holds `tar-split.json.gz` and
  `cache-id`, the name of the layer's directory under `<root>/overlay2/`; the config is
  `<root>/image/overlay2/imagedb/content/sha256/<image id>`.
- containers/storage (Podman): `<root>/overlay-layers/<layer id>.tar-split.gz` beside
  `<root>/overlay/<layer id>/diff`; the config is `<root>/overlay-images/<image id>/=<base64 of its key>`.

Anything else (the containerd image store exposes no layer directories; metacopy keeps a file's bytes in
another layer) gives None, and the image is exported instead.
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Mapping, Sequence

from slim.engine import StoredImage, StoredLayer

OVERLAY_DRIVERS = ("overlay2", "overlay")


def stored_image(
    root: Path, image_id: str, diff_ids: Sequence[str], graph_driver: Mapping, driver_status: Mapping[str, str]
) -> StoredImage | None:
    """The image's layers in the engine's storage under `root`, bottom first; None unless every piece is there."""
    data = graph_driver.get("Data") or {}
    if graph_driver.get("Name") not in OVERLAY_DRIVERS or not data.get("UpperDir"):
        return None
    if driver_status.get("Using metacopy") == "true":
        return None
    # The engine lists the lower directories top first, then the top layer's own as UpperDir.
    lower = [Path(d) for d in reversed(data["LowerDir"].split(":"))] if data.get("LowerDir") else []
    diffs = [*lower, Path(data["UpperDir"])]
    if len(diffs) != len(diff_ids):
        return None
    hex_id = image_id.removeprefix("sha256:")
    docker = root / "image" / graph_driver["Name"]
    if (docker / "layerdb").is_dir():
        layers, config = _docker_layers(docker, diff_ids, diffs), docker / "imagedb" / "content" / "sha256" / hex_id
    else:
        layers, config = _podman_layers(root, diffs), _podman_config(root, hex_id)
    if layers is None or not config.is_file() or not all(layer.tar_split.is_file() for layer in layers):
        return None
    return StoredImage(config, tuple(layers))


def _docker_layers(docker: Path, diff_ids: Sequence[str], diffs: Sequence[Path]) -> list[StoredLayer] | None:
    layers = []
    for chain_id, diff in zip(_chain_ids(diff_ids), diffs):
        record = docker / "layerdb" / "sha256" / chain_id.removeprefix("sha256:")
        try:
            cache_id = (record / "cache-id").read_text().strip()
        except OSError:
            return None
        if cache_id != diff.parent.name:  # the directory the engine named is not this layer's
            return None
        layers.append(StoredLayer(diff=diff, tar_split=record / "tar-split.json.gz"))
    return layers


def _chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The OCI chain id of each layer: the first layer's diff id, then sha256 of "<chain below> <diff id>"."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


def _podman_layers(root: Path, diffs: Sequence[Path]) -> list[StoredLayer] | None:
    if not (root / "overlay-layers").is_dir():
        return None
    return [StoredLayer(diff=diff, tar_split=root / "overlay-layers" / f"{diff.parent.name}.tar-split.gz") for diff in diffs]


def _podman_config(root: Path, hex_id: str) -> Path:
    # containers/storage names an image's data files "=" + base64 of the key; the config's key is its digest.
    key = base64.b64encode(f"sha256:{hex_id}".encode()).decode()
    return root / "overlay-images" / hex_id / f"={key}"
