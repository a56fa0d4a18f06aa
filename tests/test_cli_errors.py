"""Bad input gets one `Error:` line and its documented exit code, never a traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

from slim.errors import ExitCode
from tests.helpers import slim


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert words in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr


def test_bad_option_is_a_usage_error():
    result = slim("build", "x:1", "--timeout", "zero")
    assert_one_line_error(result, ExitCode.USAGE, "--timeout")


def test_relative_include_path_is_a_usage_error():
    result = slim("build", "x:1", "--include-path", "etc/passwd")
    assert_one_line_error(result, ExitCode.USAGE, "absolute path inside the image")


def test_engine_unreachable(tmp_path):
    result = slim("build", "x:1", env={"DOCKER_HOST": f"unix://{tmp_path}/no.sock"})
    assert_one_line_error(result, ExitCode.ENGINE_UNREACHABLE, "cannot reach the Docker engine")


@pytest.mark.engine
def test_unknown_image():
    result = slim("build", "slimtrace-test/does-not-exist:1")
    assert_one_line_error(result, ExitCode.IMAGE_NOT_FOUND, "not found")


@pytest.mark.engine
def test_image_without_entrypoint(fixture_image):
    # The debootstrap base image has neither Entrypoint nor Cmd.
    result = slim("build", fixture_image("base"))
    assert_one_line_error(result, ExitCode.APPLICATION_FAILED, "no Entrypoint or Cmd")


@pytest.mark.engine
def test_tag_that_would_replace_the_original(fixture_image):
    tag = fixture_image("jq")
    result = slim("build", tag, "--tag", tag)
    assert_one_line_error(result, ExitCode.USAGE, "never replaces the original")


@pytest.mark.engine
def test_batch_that_exits_non_zero(fixture_image):
    result = slim("build", fixture_image("jq"), "--cmd", "-e .missing /data/input.json")
    assert_one_line_error(result, ExitCode.APPLICATION_FAILED, "exited with code")


@pytest.mark.engine
def test_server_that_never_listens(fixture_image):
    result = slim("build", fixture_image("nginx"), "--http-port", "8081", "--timeout", "5")
    assert_one_line_error(result, ExitCode.APPLICATION_FAILED, "8081")



def test_output_that_cannot_be_written_is_an_error():
    """The process ends without the interpreter's teardown (slim.cli._exit_at_once): its output is flushed
    first, and a flush that fails is an error, as it is at the interpreter's exit."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "slim", "--help"], stdout=full, stderr=subprocess.PIPE, text=True)
    assert_one_line_error(result, ExitCode.TOOL_ERROR, "No space left on device")
    whole = slim("--help")
    assert whole.returncode == 0 and whole.stdout.splitlines()[-1].lstrip().startswith("xray ")  # the last line too
