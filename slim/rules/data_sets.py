"""Rules timezone and ca-certificates: data sets programs read by name once a library that reads them is kept."""
from __future__ import annotations

import re
from collections.abc import Iterator

from slim.model import Reason, ReasonKind, at_or_under
from .base import P, Keep, RuleContext, walk

TIMEZONE_DIRS = tuple(P(p) for p in ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo"))
# right/ holds the leap-second variants (only TZ=right/... reads them); the rest are zic's sources and tables.
TIMEZONE_SKIP = frozenset({"right", "tzdata.zi", "leapseconds", "leap-seconds.list", "zone.tab", "zone1970.tab",
                           "iso3166.tab", "zonenow.tab"})
LOCALTIME = P("/etc/localtime")


def keep_timezone_data(ctx: RuleContext) -> Iterator[Keep]:
    """The timezone database, once the run read /etc/localtime or any zone: a zone is looked up by name
    (TZ=..., zoneinfo.ZoneInfo("Europe/Paris")) on the first request that needs it. Every zone file is
    kept; the leap-second variants (right/) and zic's text sources and tables are not."""
    for database in TIMEZONE_DIRS:
        touched = [path for path in ctx.traced if at_or_under(path, database) or path == LOCALTIME]
        if not touched or not ctx.is_dir(database) or not ctx.once(("timezone", database)):
            continue
        reason = Reason(ReasonKind.TIMEZONE, source=str(database), detail=f"used: {min(touched)}")
        for entry in walk(ctx.rootfs, database, lambda rel, e: rel[0] in TIMEZONE_SKIP):
            yield entry.path, reason
        for extra in (LOCALTIME, P("/etc/timezone")):
            if ctx.entry(extra) is not None:
                yield extra, reason


_TLS_LIBRARY = re.compile(r"lib(ssl|gnutls|mbedtls|wolfssl|nss3)\b[\w.-]*\.so[.\d]*")
CA_LOCATIONS = tuple(
    P(p) for p in (
        "/etc/ssl/certs", "/etc/ssl/cert.pem", "/etc/ssl/openssl.cnf", "/usr/lib/ssl/certs", "/usr/lib/ssl/cert.pem",
        "/usr/lib/ssl/openssl.cnf", "/etc/pki/tls/certs",
        "/etc/pki/tls/cert.pem", "/etc/pki/ca-trust/extracted", "/etc/ca-certificates",
    )
)


def keep_ca_certificates(ctx: RuleContext) -> Iterator[Keep]:
    """The CA certificates (the bundle and the hashed directory with the certificates it links to) and
    OpenSSL's configuration, once a TLS library is kept or any of them was read: the first HTTPS
    request verifies a server against them."""
    tls = next((e.path for e in ctx.kept_files() if _TLS_LIBRARY.fullmatch(e.path.name)), None)
    read = next((p for p in sorted(ctx.traced) if any(at_or_under(p, top) for top in CA_LOCATIONS)), None)
    cause = tls or read
    if cause is None or not ctx.once("ca-certificates"):
        return
    reason = Reason(ReasonKind.CA_CERTIFICATES, source=str(cause), detail="TLS library kept" if tls else "read")
    for top in CA_LOCATIONS:
        for entry in walk(ctx.rootfs, top):
            yield entry.path, reason
