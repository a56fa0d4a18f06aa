"""Settings for the containers tests run themselves (to compare a slimmed image with its original), so the
same helpers work on every engine of the matrix."""
import docker

# Podman here starts a container only with explicit nofile/nproc limits (slimtrace sets these itself on
# Podman), and its default capabilities lack NET_RAW, which the caps fixture's program carries as a file
# capability (Docker grants NET_RAW by default, so asking for it changes nothing there).
RUN_SETTINGS = {
    "ulimits": [docker.types.Ulimit(name=name, soft=1024, hard=1024) for name in ("nofile", "nproc")],
    "cap_add": ["NET_RAW"],
}
