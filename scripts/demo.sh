#!/usr/bin/env bash
# The main job end to end on a fresh machine: build a fat nginx image locally (no registry needed),
# slim it, then serve a page from the slimmed image and compare it with the original's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

echo "==> building the demo image (Debian bookworm + nginx + a small site; cached after the first run)"
image=$(python3 -m fixtures build nginx | awk '{print $NF}')
report="$PWD/demo-nginx.slim-report.json"

echo "==> slim build $image"
python3 -m slim build "$image" --tag slimtrace-demo/nginx:slim --report "$report"

echo "==> serving / from the original and from the slimmed image"
python3 - "$image" slimtrace-demo/nginx:slim <<'PY'
import hashlib, sys, time, urllib.request

import docker

client = docker.from_env()
for image in sys.argv[1:]:
    container = client.containers.run(image, detach=True, ports={"80/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        for _ in range(50):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                break
            except OSError:
                time.sleep(0.2)
        size = client.images.get(image).attrs["Size"] / 1e6
        print(f"{image:45} {size:7.1f} MB  GET / -> {len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()[:16]}")
    finally:
        container.remove(force=True)
PY
echo "report: $report"
