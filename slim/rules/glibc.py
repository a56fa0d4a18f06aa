"""Rules nss, gconv and locale: what glibc loads by name at run time (NSS modules, iconv modules, locales)."""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from slim.model import CONFIG_READ_LIMIT, Reason, ReasonKind, at_or_under
from slim.image.rootfs import RootFS
from .base import P, Keep, RuleContext, chunks, walk

NSSWITCH = P("/etc/nsswitch.conf")
# glibc's resolver and NSS dispatcher: inside libc.so.6 since glibc 2.34, in libresolv and libnss_* before.
_RESOLVER = re.compile(r"libc\.so\.6|libc-2\.\d+\.so|libresolv\.so[.\d]*|libnss_\w+\.so[.\d]*")
NAME_SERVICE_FILES = tuple(P(p) for p in ("/etc/host.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols"))
# Since glibc 2.34 these services are built into libc.so.6; their libnss_*.so.2 are empty stubs it never loads.
BUILTIN_NSS_SERVICES = frozenset({"files", "dns"})
_GLIBC_234 = re.compile(rb"GLIBC_2\.(3[4-9]|[4-9]\d)\x00")


def keep_nss(ctx: RuleContext) -> Iterator[Keep]:
    """When name resolution can be used (nsswitch.conf read, glibc's resolver loaded: it is part of libc.so.6
    since glibc 2.34, so any glibc program can resolve a name on its first outgoing connection):
    nsswitch.conf, the NSS module of every service it names (libnss_<service>.so.2, dlopened by libc),
    and the files getaddrinfo and getservbyname read. A few tens of kilobytes."""
    resolver = next((e.path for e in ctx.kept_files() if _RESOLVER.fullmatch(e.path.name)), None)
    cause = NSSWITCH if NSSWITCH in ctx.traced else resolver
    if cause is None or not ctx.is_file(NSSWITCH) or not ctx.once("nss"):
        return
    reason = Reason(ReasonKind.NSS, source=str(cause), detail="name resolution")
    yield NSSWITCH, reason
    for path in NAME_SERVICE_FILES:
        if ctx.entry(path) is not None:
            yield path, reason
    services = nss_services(os.fsdecode(ctx.rootfs.read(NSSWITCH, limit=CONFIG_READ_LIMIT)))
    if any(_has_builtin_nss(ctx.rootfs, e.path) for e in ctx.kept_files() if _LIBC.fullmatch(e.path.name)):
        services -= BUILTIN_NSS_SERVICES
    for service in sorted(services):
        for directory in ctx.library_dirs:
            module = ctx.rootfs.resolve(directory / f"libnss_{service}.so.2")
            if module.exists and ctx.is_file(module.path):
                yield module.path, reason
                break


_LIBC = re.compile(r"libc\.so\.6|libc-2\.\d+\.so")


def _has_builtin_nss(rootfs: RootFS, libc: PurePosixPath) -> bool:
    """A glibc of 2.34 or later (it defines the symbol version GLIBC_2.34)."""
    return any(_GLIBC_234.search(chunk) for chunk in chunks(rootfs, libc))




def nss_services(text: str) -> set[str]:
    """Every service nsswitch.conf names ("hosts: files [NOTFOUND=return] dns" -> files, dns)."""
    services = set()
    for line in text.splitlines():
        database, colon, rest = line.split("#", 1)[0].partition(":")
        if colon and database.strip():
            services.update(re.findall(r"(?<![\[=\w])([A-Za-z][\w-]*)(?![\w=\]])", re.sub(r"\[[^\]]*\]", " ", rest)))
    return services


def keep_gconv(ctx: RuleContext) -> Iterator[Keep]:
    """All of glibc's gconv modules once iconv used one (a module loaded, or gconv-modules read): the
    next conversion may name another charset. gconv-modules.cache alone is read by every program that
    sets a locale and says nothing about iconv."""
    for directory in dict.fromkeys(d / "gconv" for d in ctx.library_dirs):
        if not ctx.is_dir(directory):
            continue
        config = [p for p in ctx.traced if p.parent == directory and p.name == "gconv-modules"
                  or at_or_under(p, directory / "gconv-modules.d")]
        modules = [p for p in ctx.kept if p.parent == directory and p.suffix == ".so"]
        cause = min(config + modules, default=None)
        if cause is None or not ctx.once(("gconv", directory)):
            continue
        reason = Reason(ReasonKind.GCONV, source=str(cause), detail="iconv")
        for entry in walk(ctx.rootfs, directory):
            yield entry.path, reason


LOCALE_VARIABLES = ("LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_COLLATE", "LC_NUMERIC", "LC_TIME", "LC_MONETARY", "LANG")
LOCALE_DIRS = tuple(P(p) for p in ("/usr/lib/locale", "/usr/lib64/locale", "/usr/local/lib/locale"))
LOCALE_ALIASES = tuple(P(p) for p in ("/usr/share/locale/locale.alias", "/etc/locale.alias"))


def keep_locale(ctx: RuleContext) -> Iterator[Keep]:
    """The compiled locale the image's Env sets (LANG, LC_ALL, LC_*): its directory under /usr/lib/locale,
    or the locale archive when the locale is only in there, and locale.alias."""
    env = ctx.facts.env
    names = {env[v] for v in LOCALE_VARIABLES if env.get(v) and env[v] not in ("C", "POSIX")}
    if not names or not ctx.once("locale"):
        return
    for name in sorted(names):
        reason = Reason(ReasonKind.LOCALE, source=name, detail="set by the image's Env")
        found = False
        for directory in LOCALE_DIRS:
            for candidate in locale_candidates(name):
                if ctx.is_dir(directory / candidate):
                    found = True
                    for entry in walk(ctx.rootfs, directory / candidate):
                        yield entry.path, reason
            if not found and ctx.is_file(directory / "locale-archive"):
                yield directory / "locale-archive", reason
        for alias in LOCALE_ALIASES:
            if ctx.entry(alias) is not None:
                yield alias, reason


def locale_candidates(name: str) -> list[str]:
    """The directory names glibc tries for a locale: language[_territory][.codeset][@modifier], with the
    codeset as written and normalised (UTF-8 -> utf8), then with less and less of it."""
    match = re.fullmatch(r"([^_.@]+)(_[^.@]+)?(\.[^@]+)?(@.+)?", name)
    if not match:
        return [name]
    language, territory, codeset, modifier = (part or "" for part in match.groups())
    normal = ""
    if codeset:
        normal = "".join(c.lower() for c in codeset[1:] if c.isalnum())
        normal = "." + ("iso" + normal if normal.isdigit() else normal)
    forms = [name]
    for cs in dict.fromkeys(c for c in (codeset, normal, "") if c is not None):
        for terr in (territory, ""):
            for mod in (modifier, ""):
                forms.append(f"{language}{terr}{cs}{mod}")
    return list(dict.fromkeys(forms))
