"""Image references read the way the engine reads them (docker/distribution's grammar, through
docker-image-py): `foo`, `foo:latest`, `docker.io/foo:latest` and `docker.io/library/foo` are one name."""
from __future__ import annotations

from docker_image.reference import InvalidReference, Reference

DEFAULT_TAG = "latest"


def normalised_tag(text: str) -> str:
    """`domain/path:tag` in full (docker.io/library/foo:latest), the form two names are compared in.
    Raises ValueError, in the engine's words, for what the engine would refuse or silently change."""
    try:
        reference = Reference.parse_normalized_named(text)
    except InvalidReference as e:
        raise ValueError(f"{text!r} is not a valid image tag: {e}") from e
    if reference["digest"]:
        raise ValueError(f"{text!r} names a digest; a tag cannot")
    return f"{reference['name']}:{reference['tag'] or DEFAULT_TAG}"


def same_name(one: str, other: str) -> bool:
    """Whether two references name the same repository and tag once the engine has normalised them."""
    try:
        return normalised_tag(one) == normalised_tag(other)
    except ValueError:
        return False
