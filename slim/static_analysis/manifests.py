"""The dependencies packages and applications declare, read from their manifests (pure parsing).

Node: package.json `dependencies` and `optionalDependencies` (never `devDependencies`), `workspaces`, and
package-lock.json's installed packages that are not dev-only. Python: a distribution's `Requires-Dist`
(METADATA) or `requires.txt` (egg-info) with markers evaluated for the image's Python and no extras, and an
application's requirements*.txt and pyproject.toml `[project] dependencies`. Ruby: Gemfile.lock's gems.
"""
from __future__ import annotations

import json
import re
import tomllib
from email.parser import BytesHeaderParser

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


def node_manifest(text: bytes) -> tuple[list[str], list[str], list[str]]:
    """(dependencies, optionalDependencies, workspace globs) of a package.json; empty when unreadable."""
    try:
        data = json.loads(text)
    except ValueError:
        return [], [], []
    if not isinstance(data, dict):
        return [], [], []
    workspaces = data.get("workspaces") or []
    if isinstance(workspaces, dict):  # yarn's {"packages": [...]}
        workspaces = workspaces.get("packages") or []
    return (sorted(_names(data.get("dependencies"))), sorted(_names(data.get("optionalDependencies"))),
            [w for w in workspaces if isinstance(w, str)])


def _names(table: object) -> list[str]:
    return [name for name in table if isinstance(name, str)] if isinstance(table, dict) else []


def lock_installed(text: bytes) -> list[str]:
    """The install paths (node_modules/a/node_modules/@s/b) package-lock.json (v2, v3) lists, dev-only
    packages left out."""
    try:
        packages = json.loads(text).get("packages") or {}
    except (ValueError, AttributeError):
        return []
    return sorted(path for path, info in packages.items()
                  if "node_modules/" in f"/{path}" and isinstance(info, dict) and not info.get("dev")
                  and not info.get("devOptional"))


def python_environment(version: str) -> dict[str, str]:
    """Marker values of a CPython `version` ("3.11") on Linux x86-64, with no extra requested."""
    return {"python_version": version, "python_full_version": f"{version}.0", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def requires_dist(metadata: bytes, environment: dict[str, str]) -> list[str]:
    """Canonical names of the distributions a METADATA / PKG-INFO file requires in `environment`."""
    headers = BytesHeaderParser().parsebytes(metadata)
    return _applicable(headers.get_all("Requires-Dist") or [], environment)


def requires_txt(text: bytes, environment: dict[str, str]) -> list[str]:
    """An egg-info's requires.txt: the lines before any [section], and [:marker] sections that apply
    ([extra] and [extra:marker] sections are extras, never required)."""
    lines, applies = [], True
    for raw in text.decode(errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("["):
            extra, _, marker = line.strip("[]").partition(":")
            applies = not extra and _marker_holds(marker, environment)
        elif line and applies:
            lines.append(line)
    return _applicable(lines, environment)


def requirement_lines(text: bytes, environment: dict[str, str]) -> list[str]:
    """A requirements file's requirements (options, includes, URLs and editable installs left out)."""
    lines = [line.split(" #", 1)[0].strip() for line in text.decode(errors="replace").splitlines()]
    return _applicable([line for line in lines if line and not line.startswith(("#", "-"))], environment)


def pyproject_dependencies(text: bytes, environment: dict[str, str]) -> list[str]:
    try:
        project = tomllib.loads(text.decode(errors="replace")).get("project") or {}
    except tomllib.TOMLDecodeError:
        return []
    return _applicable([d for d in project.get("dependencies") or [] if isinstance(d, str)], environment)


def _applicable(specs: list[str], environment: dict[str, str]) -> list[str]:
    names = []
    for spec in specs:
        try:
            requirement = Requirement(spec)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate(environment):
            names.append(canonicalize_name(requirement.name))
    return sorted(set(names))


def _marker_holds(marker: str, environment: dict[str, str]) -> bool:
    try:
        return not marker or Marker(marker).evaluate(environment)
    except InvalidMarker:
        return True


_GEM_SPEC = re.compile(r"^    ([A-Za-z0-9_.-]+) \(([^)\s]+)\)$")


def gemfile_lock_gems(text: bytes) -> list[tuple[str, str]]:
    """(name, version) of each gem Gemfile.lock pins (the four-space-indented lines of its specs)."""
    return sorted({(m[1], m[2]) for line in text.decode(errors="replace").splitlines() if (m := _GEM_SPEC.match(line))})
