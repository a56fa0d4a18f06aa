"""Issue 14: never touch what isn't ours, survive every interrupt, treat image content as hostile text.

Every test provokes its item for real: `python3 -m slim` as a user runs it, real signals, the real engine,
real devices and files. The serious items carry their number in the test name.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path, PurePosixPath as P
from typing import Iterator

import docker
import pytest

from slim.errors import ExitCode
from slim.ownership import RUN_LABEL, WORK_REPOSITORY, RunId
from fixtures.catalog import has_image
from tests.helpers import slim

STAGES = ("inspect", "index", "trace", "closure", "assemble", "verify", "measure")
APPEARS_WITHIN = 120  # seconds a started build may take to create what a test then looks at


class Running:
    """A `python3 -m slim ...` in the background whose progress lines (`==> stage`) we can wait for."""

    def __init__(self, *args: str, env: dict | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "slim", *map(str, args)], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self.run = RunId.of(self.process.pid)
        self.stderr: list[str] = []

    def wait_for(self, stage: str) -> None:
        while line := self.process.stderr.readline():
            self.stderr.append(line)
            if line.strip() == f"==> {stage}":
                return
        raise AssertionError(f"the build ended before {stage}:\n{''.join(self.stderr)}")

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def finish(self) -> tuple[int, str]:
        _, rest = self.process.communicate(timeout=900)
        return self.process.returncode, "".join(self.stderr) + rest


def leftovers(client: docker.DockerClient, run: RunId) -> list[str]:
    """Everything carrying this run's identity: containers, work image tags, temp dirs."""
    containers = [c.name for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run.token}"})]
    tags = [t for image in client.images.list(name=WORK_REPOSITORY) for t in image.tags if f":{run.token}-" in t]
    directories = [str(path) for path in Path("/tmp").glob(f"slimtrace-{run.token}-*")]
    return containers + tags + directories


def remove_tags(client: docker.DockerClient, *tags: str) -> None:
    """Untag only: the engine deletes an image with its last tag, never one somebody else tagged."""
    for tag in tags:
        try:
            client.images.remove(tag)
        except docker.errors.ImageNotFound:
            pass


def new_tag(name: str = "app") -> str:
    return f"slimtrace-hardening/{name}-{uuid.uuid4().hex[:10]}:slim"


def runs_like_jq(client: docker.DockerClient, tag: str) -> bool:
    return client.containers.run(tag, remove=True) == b"4\n"


def assert_clean_exit(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, f"exit {result.returncode}, expected {code}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- 1: concurrent builds of one image


@pytest.mark.engine
@pytest.mark.parametrize("stage", STAGES)
def test_serious_1_concurrent_builds_never_remove_each_others_image(stage, fixture_image, docker_client, tmp_path):
    """Both builds load the same image id. B is stopped at `stage`, A finishes and tags, then B is
    interrupted: A's image must stay, whatever B's cleanup does."""
    image = fixture_image("jq")
    tag_a, tag_b = new_tag("a"), new_tag("b")
    report_a, report_b = tmp_path / "a.json", tmp_path / "b.json"
    b = Running("build", image, "--tag", tag_b, "--report", report_b)
    try:
        b.wait_for(stage)
        b.signal(signal.SIGSTOP)
        try:
            a = slim("build", image, "--tag", tag_a, "--report", report_a)
        finally:
            b.signal(signal.SIGCONT)
            b.signal(signal.SIGINT)
        code_b, stderr_b = b.finish()
        assert_clean_exit(a, 0)
        assert docker_client.images.get(tag_a).id == json.loads(report_a.read_text())["result"]["id"]
        assert runs_like_jq(docker_client, tag_a)
        # B either stopped and kept nothing, or had already handed over: then its image and report both exist.
        assert code_b in (0, 130), stderr_b
        assert has_image(docker_client, tag_b) == report_b.exists() == (code_b == 0)
        assert leftovers(docker_client, b.run) == []
    finally:
        remove_tags(docker_client, tag_a, tag_b)


@pytest.mark.engine
def test_serious_1_three_different_images_at_once(fixture_image, docker_client, tmp_path):
    names = ("jq", "caps", "nginx")
    tags = {name: new_tag(name) for name in names}
    builds = {name: Running("build", fixture_image(name), "--tag", tags[name], "--report", tmp_path / f"{name}.json")
              for name in names}
    try:
        for name, build in builds.items():
            code, stderr = build.finish()
            assert code == 0, stderr
            assert docker_client.images.get(tags[name]).id == json.loads(
                (tmp_path / f"{name}.json").read_text())["result"]["id"]
            assert leftovers(docker_client, build.run) == []
        assert runs_like_jq(docker_client, tags["jq"])
    finally:
        remove_tags(docker_client, *tags.values())


# ---------------------------------------------------------------- 2: tags the engine normalises


@pytest.fixture
def latest_alias(fixture_image, docker_client):
    """The jq fixture also tagged REPO:latest, so `--tag REPO` names it."""
    repository = f"slimtrace-hardening/original-{uuid.uuid4().hex[:10]}"
    docker_client.images.get(fixture_image("jq")).tag(repository, "latest")
    yield repository
    remove_tags(docker_client, f"{repository}:latest")


@pytest.mark.engine
@pytest.mark.parametrize("form", ["docker.io/{image}", "docker.io/{repo}", "{repo}", "{repo}:latest",
                                  "index.docker.io/{repo}:latest", "{repo}:x:1", "Hostile/BAD TAG:1"])
def test_serious_2_a_tag_that_resolves_to_the_original_or_is_invalid_is_refused(
        form, latest_alias, fixture_image, docker_client, tmp_path):
    source = f"{latest_alias}:latest"
    tags_before = docker_client.images.get(source).tags
    tag = form.format(image=source, repo=latest_alias)
    result = slim("build", source, "--tag", tag, "--report", tmp_path / "r.json")
    assert_clean_exit(result, 2)
    assert "==> index" not in result.stderr  # refused before any work
    assert docker_client.images.get(source).tags == tags_before


# ---------------------------------------------------------------- 3: --report never replaces what is there


@pytest.mark.engine
def test_serious_3_report_to_a_device_writes_through_and_never_replaces_it(fixture_image, docker_client):
    tag = new_tag()
    try:
        result = slim("build", fixture_image("jq"), "--tag", tag, "--report", "/dev/null")
        assert_clean_exit(result, 0)
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
        full = slim("build", fixture_image("jq"), "--tag", tag + "-full", "--report", "/dev/full")
        assert_clean_exit(full, 2)
        assert "/dev/full" in full.stderr and "no space left" in full.stderr
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
        assert not has_image(docker_client, tag + "-full")  # no report, no tag
    finally:
        remove_tags(docker_client, tag, tag + "-full")


@pytest.mark.engine
def test_serious_3_report_through_a_symlink_follows_it(fixture_image, docker_client, tmp_path):
    target, link = tmp_path / "real.json", tmp_path / "link.json"
    target.write_text("old")
    target.chmod(0o644)
    link.symlink_to(target)
    tag = new_tag()
    try:
        assert_clean_exit(slim("build", fixture_image("jq"), "--tag", tag, "--report", link), 0)
        assert link.is_symlink() and os.readlink(link) == str(target)
        assert json.loads(target.read_text())["result"]["tag"] == tag
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    finally:
        remove_tags(docker_client, tag)


@contextlib.contextmanager
def mounted_tmpfs(directory: Path, options: str) -> Iterator[Path]:
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@pytest.fixture
def read_only_dir(tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as directory:
        yield directory


@pytest.mark.engine
@pytest.mark.parametrize("name", ["report.json", "sub/report.json"])
def test_serious_3_unwritable_report_path_is_refused_before_building(name, read_only_dir, fixture_image,
                                                                     docker_client):
    tag = new_tag()
    result = slim("build", fixture_image("jq"), "--tag", tag, "--report", read_only_dir / name)
    assert_clean_exit(result, 2)
    assert "Read-only file system" in result.stderr and "==> inspect" not in result.stderr
    assert not has_image(docker_client, tag)


@pytest.mark.engine
def test_serious_3_report_onto_a_fifo_is_refused(fixture_image, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result = slim("build", fixture_image("jq"), "--report", fifo)
    assert_clean_exit(result, 2)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# ---------------------------------------------------------------- 4: image content is text, not markup

OSC_TITLE = "\x1b]0;pwned\x07"
HOSTILE_DOCKERFILE = r"""
FROM {base}
RUN mkdir -p '/hostile/[' /opt \
 && printf '#!/opt/[/bold]\033]0;pwned\007\n' > /hostile/tool && chmod +x /hostile/tool \
 && head -c 30000000 /dev/zero > '/hostile/[/bold]' \
 && head -c 30000000 /dev/zero > "/hostile/$(printf 'osc\033]0;pwned\007')" \
 && head -c 30000000 /dev/zero > "/hostile/$(printf 'row\n<img src=x onerror=alert(1)>')" \
 && head -c 30000000 /dev/zero > "/hostile/$(printf 'bad\377name')" \
 && printf 'cat /hostile/tool; printf "[/bold] \\033]0;pwned\\007\\n"; exit ${{FAIL:-0}}\n' > /hostile/run.sh
ENTRYPOINT ["/bin/sh", "/hostile/run.sh"]
CMD []
"""


@pytest.fixture
def derived_image(fixture_image, docker_client):
    """derived_image(dockerfile) -> tag of an image built from `dockerfile`, where {base} is the jq fixture."""
    tags = []

    def build(dockerfile: str) -> str:
        context = io.BytesIO()
        text = dockerfile.format(base=fixture_image("jq")).encode()
        with tarfile.open(fileobj=context, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
        context.seek(0)
        tags.append(new_tag("derived"))
        docker_client.images.build(fileobj=context, custom_context=True, tag=tags[-1], rm=True, forcerm=True)
        return tags[-1]

    yield build
    remove_tags(docker_client, *tags)


@pytest.fixture
def hostile_image(derived_image):
    return derived_image(HOSTILE_DOCKERFILE)


@pytest.mark.engine
def test_serious_4_image_text_is_data_on_the_console_in_markdown_and_html(hostile_image, docker_client, tmp_path):
    tag, report = new_tag(), tmp_path / "hostile.json"
    try:
        built = slim("build", hostile_image, "--tag", tag, "--report", report, "--app-files", "none",
                     "--include-path", "/missing[/bold]")
        assert_clean_exit(built, 0)
        assert "[/bold]" in built.stdout and "\x1b" not in built.stdout  # the warnings, shown as text
        failed = slim("build", hostile_image, "--env", "FAIL=3", "--report", tmp_path / "failed.json")
        assert_clean_exit(failed, 5)
        assert "[/bold]" in failed.stderr and "\x1b" not in failed.stderr and "\\x1b]0;pwned" in failed.stderr

        text = slim("report", report)
        assert_clean_exit(text, 0)
        assert "\x1b" not in text.stdout and "\\x1b]0;pwned\\x07" in text.stdout and "bad\\xffname" in text.stdout
        markdown = tmp_path / "report.md"
        assert_clean_exit(slim("report", report, "--format", "markdown", "-o", markdown), 0)
        rows = [line for line in markdown.read_text().splitlines() if "/hostile/" in line]
        assert rows and all(line.startswith("|") and line.endswith("|") for line in rows)  # no row broken
        for line in markdown.read_text().splitlines():  # HTML from a file name only inside a code span
            assert "<img" not in line or "`/hostile/row\\n<img src=x onerror=alert(1)>`" in line
        html = tmp_path / "report.html"
        assert_clean_exit(slim("report", report, "--format", "html", "-o", html), 0)
        assert "<img" not in html.read_text() and "\x1b" not in html.read_text()
        explained = slim("explain", report, "/hostile/[/bold]")
        assert_clean_exit(explained, 0)
        assert "[/bold]" in explained.stdout
    finally:
        remove_tags(docker_client, tag)


# ---------------------------------------------------------------- 5: Ctrl-C in the first moments of the trace


@pytest.mark.engine
@pytest.mark.parametrize("delay", [0, 0.02, 0.05, 0.08, 0.2, 0.5])
def test_serious_5_ctrl_c_early_in_the_trace_leaves_no_container(delay, fixture_image, docker_client, tmp_path):
    build = Running("build", fixture_image("jq"), "--tag", new_tag(), "--report", tmp_path / "r.json")
    build.wait_for("trace")
    time.sleep(delay)
    build.signal(signal.SIGINT)
    code, stderr = build.finish()
    assert code == 130, stderr
    assert "everything slimtrace created was removed" in stderr and "Traceback" not in stderr
    assert leftovers(docker_client, build.run) == []


# ---------------------------------------------------------------- 6: probe files that never end


@pytest.mark.engine
@pytest.mark.parametrize("kind", ["fifo", "endless", "too-big", "not-utf8"])
def test_serious_6_probe_file_that_is_no_regular_bounded_text_file_is_a_usage_error(kind, fixture_image, tmp_path):
    path = {"endless": Path("/dev/zero")}.get(kind, tmp_path / "probes.yaml")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "too-big":
        path.write_text("# padding\n" * 200_000)
    elif kind == "not-utf8":
        path.write_bytes(b"exec:\n  - [\"echo\", \"caf\xe9\"]\n")
    result = slim("build", fixture_image("jq"), "--probe-file", path, "--report", tmp_path / "r.json")
    assert_clean_exit(result, 2)
    assert str(path) in result.stderr


# ---------------------------------------------------------------- 7: SIGKILL, then the next run or slim gc


def killed_during_trace(image: str, tmp_path: Path, client: docker.DockerClient) -> RunId:
    """A build of a server killed with SIGKILL while its traced container runs: what does it leave?"""
    build = Running("build", image, "--tag", new_tag(), "--report", tmp_path / "killed.json")
    build.wait_for("trace")
    deadline = time.monotonic() + APPEARS_WITHIN
    label = {"label": f"{RUN_LABEL}={build.run.token}", "status": "running"}
    while not client.containers.list(filters=label):
        assert time.monotonic() < deadline, "the traced container never ran"
        time.sleep(0.2)
    build.signal(signal.SIGKILL)
    build.finish()
    # The container, and the gate's and the build's temp dirs. The container, running when the build was killed,
    # has now and then stopped on its own by now (its lookup supervisor dies with the build): left all the same.
    assert leftovers(client, build.run)
    assert client.containers.list(all=True, filters={"label": label["label"]})
    return build.run


@pytest.mark.engine
def test_serious_7_after_sigkill_slim_gc_removes_what_the_dead_run_left(fixture_image, docker_client, tmp_path):
    dead = killed_during_trace(fixture_image("nginx"), tmp_path, docker_client)
    result = slim("gc")
    assert_clean_exit(result, 0)
    assert "removed what dead slimtrace runs left behind" in result.stderr
    assert leftovers(docker_client, dead) == []
    again = slim("gc")
    assert_clean_exit(again, 0)
    assert dead.token not in again.stderr


@pytest.mark.engine
def test_serious_7_after_sigkill_the_next_build_removes_what_the_dead_run_left(fixture_image, docker_client,
                                                                                tmp_path):
    dead = killed_during_trace(fixture_image("nginx"), tmp_path, docker_client)
    tag = new_tag()
    try:
        result = slim("build", fixture_image("jq"), "--tag", tag, "--report", tmp_path / "next.json")
        assert_clean_exit(result, 0)
        assert "removed what dead slimtrace runs left behind" in result.stderr and dead.token in result.stderr
        assert leftovers(docker_client, dead) == []
    finally:
        remove_tags(docker_client, tag)


def test_gc_never_touches_what_a_live_run_owns(tmp_path):
    """A temp dir named after this very test process (alive) stays; one of a pid that is gone goes."""
    from slim.ownership import collect_garbage

    class NoEngine:
        def labelled_containers(self, label):
            return {}

        def repository_tags(self, repository):
            return ()

    alive = tmp_path / f"slimtrace-{RunId.of(os.getpid()).token}-build-x"
    dead = tmp_path / f"slimtrace-{RunId(os.getpid(), 1).token}-gate-y"  # this pid, another start: reused
    alive.mkdir()
    dead.mkdir()
    removed = collect_garbage(NoEngine(), tmp_path)
    assert removed.directories == (str(dead),) and alive.is_dir() and not dead.exists()


def test_retired_work_runs_in_order_in_the_background_and_the_block_waits_for_it():
    """What the build hands to `retire` (stopping and removing containers, then the work tag) runs on one
    thread in the order given, the caller going on at once; leaving `retiring` waits for all of it and
    raises its first error. Outside the block, `retire` works at once."""
    import threading
    from slim.ownership import retire, retiring

    done: list[str] = []
    release = threading.Event()
    retire(done.append, "at once")
    assert done == ["at once"]
    with pytest.raises(RuntimeError, match="engine gone"):
        with retiring():
            retire(lambda: release.wait(10) and done.append("stop"))
            retire(done.append, "remove")
            retire(_fail, "engine gone")
            retire(done.append, "untag")
            assert done == ["at once"]  # the caller did not wait
            release.set()
    assert done == ["at once", "stop", "remove", "untag"]


def _fail(why: str) -> None:
    raise RuntimeError(why)


def test_the_trace_waits_for_the_exit_of_pid_1_itself():
    """The trace stops once the container's first process exited, seen through a pidfd opened before the
    stop signal (and the signal sent through it): a process that exits later is waited for; one already
    gone, or none, is no process to wait for."""
    from slim.build.tracing import watched_process

    child = subprocess.Popen(["sleep", "30"])
    with watched_process(child.pid) as process:
        assert process.wait(0.2) is False  # still running: the wait ran out, nothing was done to the process
        assert child.poll() is None
        process.signal(signal.SIGTERM)
        assert process.wait(30) is True
        assert child.poll() == -signal.SIGTERM  # a zombie until reaped here
        process.signal(signal.SIGKILL)  # exited: nothing to signal, and no error
    with watched_process(child.pid) as process:  # reaped: no such process
        assert process is None
    with watched_process(None) as process:
        assert process is None


# ---------------------------------------------------------------- medium items


@pytest.fixture
def small_tmpdir(tmp_path):
    with mounted_tmpfs(tmp_path / "small", "size=4m") as directory:  # less than the slimmed nginx layer
        yield directory


@pytest.mark.engine
def test_disk_full_in_tmpdir_names_the_directory_with_its_own_exit_code(small_tmpdir, fixture_image, docker_client,
                                                                         tmp_path):
    build = Running("build", fixture_image("nginx"), "--tag", new_tag(), "--report", tmp_path / "r.json",
                    env={"TMPDIR": str(small_tmpdir)})
    code, stderr = build.finish()
    assert code == ExitCode.NO_SPACE, stderr
    assert f"no space left in {small_tmpdir}" in stderr and "Traceback" not in stderr
    assert leftovers(docker_client, build.run) == [] and list(small_tmpdir.iterdir()) == []


@pytest.mark.engine
@pytest.mark.parametrize("owned", ["echo file > /.slimtrace", "ln -s /tmp /.slimtrace", "mkdir /.slimtrace"])
def test_an_image_that_owns_the_gate_mount_point_is_refused_clearly(owned, derived_image, docker_client, tmp_path):
    image = derived_image("FROM {base}\nRUN " + owned + "\n")
    build = Running("build", image, "--tag", new_tag(), "--report", tmp_path / "r.json")
    code, stderr = build.finish()
    assert code == ExitCode.CANNOT_TRACE and "has its own /.slimtrace" in stderr and "Traceback" not in stderr, stderr
    assert leftovers(docker_client, build.run) == []


@pytest.mark.engine
def test_a_huge_ld_so_conf_is_read_only_as_far_as_needed(derived_image, docker_client, tmp_path):
    """A 200 MB /etc/ld.so.conf.d/*.conf: the build's peak memory stays below the file's size."""
    image = derived_image("FROM {base}\nRUN yes /no/such/lib | head -c 200000000 > /etc/ld.so.conf.d/huge.conf\n")
    tag = new_tag()
    measure = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    try:
        result = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "slim", "build", image, "--tag",
                                 tag, "--report", str(tmp_path / "r.json")], capture_output=True, text=True)
        assert_clean_exit(result, 0)
        peak_kib = int(result.stdout.strip().splitlines()[-1])
        assert peak_kib * 1024 < 200_000_000
    finally:
        remove_tags(docker_client, tag)


SPECIAL_FILES_DOCKERFILE = """
FROM {base}
RUN mkdir /srv/special && mkfifo /srv/special/pipe && mknod /srv/special/null c 1 3 \\
    && ln -s loop-b /srv/special/loop-a && ln -s loop-a /srv/special/loop-b
ENTRYPOINT ["/bin/sh", "-c", "echo through > /srv/special/pipe & cat /srv/special/pipe; cat /srv/special/null; \\
    cat /srv/special/loop-a 2>&1; echo done"]
"""


@pytest.mark.engine
def test_fifos_device_nodes_and_symlink_loops_the_app_opened_are_kept_as_they_are(derived_image, docker_client,
                                                                                  tmp_path):
    image, tag, report = derived_image(SPECIAL_FILES_DOCKERFILE), new_tag(), tmp_path / "r.json"
    try:
        assert_clean_exit(slim("build", image, "--tag", tag, "--report", report), 0)
        kept = {entry["path"]: entry for entry in json.loads(report.read_text())["kept"]}
        assert kept["/srv/special/pipe"]["kind"] == "fifo" and kept["/srv/special/null"]["kind"] == "char"
        assert kept["/srv/special/loop-a"]["kind"] == kept["/srv/special/loop-b"]["kind"] == "symlink"
        loop_error = b"cat: /srv/special/loop-a: Too many levels of symbolic links\n"
        assert docker_client.containers.run(tag, remove=True) == b"through\n" + loop_error + b"done\n"
    finally:
        remove_tags(docker_client, tag)


STOP_MY_ORIGINAL = (
    "python3 -c 'import sys, docker; from slim.ownership import RUN_LABEL, RunId; "
    "label = RUN_LABEL + \"=\" + RunId.of(int(sys.argv[1])).token; "
    "[c.stop() for c in docker.from_env().containers.list(filters={\"label\": label})]' $PPID"
)


@pytest.mark.engine
def test_the_original_stopped_from_outside_is_the_originals_failure(fixture_image, docker_client, tmp_path):
    """A host probe (a child of this very build) stops the traced original from outside: exit 5, not 6."""
    result = slim("build", fixture_image("nginx"), "--host-exec", STOP_MY_ORIGINAL, "--report", tmp_path / "r.json",
                  env={"PYTHONPATH": str(Path(__file__).parents[1])})
    assert_clean_exit(result, ExitCode.APPLICATION_FAILED)
    assert "the original container stopped during the probes" in result.stderr


@pytest.mark.engine
def test_the_original_paused_from_outside_is_the_originals_failure(fixture_image, docker_client, tmp_path):
    """The traced original is frozen (`docker pause`) as soon as it runs: exit 5, not 6, and nothing is left."""
    build = Running("build", fixture_image("nginx"), "--tag", new_tag(), "--ready-timeout", "5",
                    "--report", tmp_path / "r.json")
    build.wait_for("trace")
    deadline = time.monotonic() + APPEARS_WITHIN
    while not _paused(docker_client, build.run):
        assert time.monotonic() < deadline, "the traced container never ran"
        time.sleep(0.01)
    code, stderr = build.finish()
    assert code == ExitCode.APPLICATION_FAILED, stderr
    assert "the original" in stderr and "Traceback" not in stderr
    assert leftovers(docker_client, build.run) == []


def _paused(client: docker.DockerClient, run: RunId) -> bool:
    """Pause this run's container if it is running yet; whether it is paused now."""
    for container in client.containers.list(filters={"label": f"{RUN_LABEL}={run.token}"}):
        with contextlib.suppress(docker.errors.APIError):  # created but not started yet, or gone
            container.pause()
            return True
    return False


RECORD_DISTINCT_OPENS = """
import resource, sys
from slim.adapters.docker_engine import DockerEngine
from slim.engine import ContainerSpec
from slim.build.exercise import ExercisePlan, exercise
from slim.adapters.fanotify_tracer import FanotifyTracer
from slim.build.tracing import run_traced

engine = DockerEngine()
script = f"i=0; while [ $i -lt {sys.argv[2]} ]; do : > /tmp/f$i; i=$((i+1)); done"
spec = ContainerSpec(image=sys.argv[1], entrypoint=("/bin/sh",), command=("-c", script))
plan = ExercisePlan(probes=(), mode="batch", timeout=3600)
trace = run_traced(engine, FanotifyTracer(), spec, lambda cid, mark, news: exercise(engine, cid, plan, mark, news))
created = sum(1 for traced in trace.paths if traced.path.parent.name == "tmp" and traced.path.name.startswith("f"))
print(created, trace.health.overflow, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.engine
def test_the_recorder_holds_200000_distinct_opens_in_memory_proportional_to_them(fixture_image):
    opens = 200_000
    result = subprocess.run([sys.executable, "-c", RECORD_DISTINCT_OPENS, fixture_image("jq"), str(opens)],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    created, overflow, peak_kib = result.stdout.split()
    assert (int(created), overflow) == (opens, "False")
    assert int(peak_kib) * 1024 < opens * 2048  # under 2 KiB per distinct path, the interpreter included


@pytest.mark.engine
def test_a_sparse_file_stays_sparse_in_the_layer_we_write(derived_image, docker_client, tmp_path):
    from slim.adapters.docker_engine import DockerEngine
    from slim.build.assemble import build_image, plan_image
    from slim.build.closure import ClosureOptions, compute_closure
    from slim.model import Seen
    from slim.image.rootfs import RootFS, spool_image

    engine = DockerEngine(docker_client)
    facts = engine.inspect_image(derived_image("FROM {base}\nRUN truncate -s 300M /sparse\n"))
    rootfs = RootFS.from_layers(spool_image(engine, facts.id, tmp_path / "source"))
    closure = compute_closure(Seen(paths=()), rootfs, facts, ClosureOptions(include_paths=(P("/sparse"),)))
    work_tag = f"{WORK_REPOSITORY}:test-{uuid.uuid4().hex[:8]}"
    try:
        assembled = build_image(engine, plan_image(closure, rootfs, facts), rootfs, tmp_path / "result", work_tag)
        assembled.gzip.close()
        built = assembled.image
        layer = tmp_path / "result" / "layer.tar"
        assert built.layer_size == layer.stat().st_size > 300_000_000
        assert layer.stat().st_blocks * 512 < 50_000_000  # the 300 MB of zeros take no disk
    finally:
        remove_tags(docker_client, work_tag)


# ---------------------------------------------------------------- pure pieces


def test_printable_escapes_terminal_sequences_and_undecodable_bytes():
    from slim.safe_text import console, printable

    name = b"/srv/osc\x1b]0;pwned\x07 csi\x1b[2J c1\xc2\x9b bad\xff\nrow".decode("utf-8", "surrogateescape")
    assert printable(name) == "/srv/osc\\x1b]0;pwned\\x07 csi\\x1b[2J c1\\x9b bad\\xff\nrow"
    assert printable(name, one_line=True).endswith("bad\\xff\\nrow")
    assert printable(name).encode("utf-8")  # always encodable
    assert console("[/bold] lib[x]") == "\\[/bold] lib\\[x]"


@pytest.mark.parametrize("one, other, same", [
    ("foo", "docker.io/library/foo:latest", True),
    ("foo:1", "index.docker.io/foo:1", True),  # the legacy index host is docker.io to the engine too
    ("me/app:1", "docker.io/me/app:1", True),
    ("localhost:5000/app", "localhost:5000/app:latest", True),
    ("foo:1", "foo:2", False),
    ("foo:x:1", "foo:1", False),
])
def test_references_compare_as_the_engine_normalises_them(one, other, same):
    from slim.references import same_name

    assert same_name(one, other) is same
