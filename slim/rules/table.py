"""The keep rules, in the order they apply: the table `--no-rule`, `slim build --help` and the README name.

The rules themselves live in this package, one module per family: what the run used or the image's layers
show, and slim/rules/reach.py (what code and manifests can reach); this table is the one place that lists them all.
"""
from __future__ import annotations

from . import reach
from slim.model import ReasonKind
from .base import Rule
from .app_files import keep_app_files
from .packages import keep_packages
from .runtimes import keep_runtimes
from .data_sets import keep_ca_certificates, keep_timezone_data
from .glibc import keep_gconv, keep_locale, keep_nss
from .directories import keep_data_trees, keep_empty_subdirectories

RULES = (
    Rule("app-files", ReasonKind.APP_FILE,
         "files the image's own layers added (COPY/ADD, WORKDIR, entrypoint dir)",
         keep_app_files),
    Rule("data-trees", ReasonKind.DATA_TREE,
         "a non-root-owned data directory, whole once touched (database data)",
         keep_data_trees),
    Rule("packages", ReasonKind.PACKAGE,
         "a Python/Node/Ruby package whole (not docs/tests) once one file is used",
         keep_packages),
    Rule("declared", ReasonKind.DECLARED,
         "packages kept manifests declare (package.json, Requires-Dist, requirements, Gemfile.lock)",
         reach.keep_declared_dependencies),
    Rule("script-commands", ReasonKind.SCRIPT_COMMAND,
         "commands the entrypoint's shell scripts can run on any branch, and paths they test",
         reach.keep_script_commands),
    Rule("named-programs", ReasonKind.NAMED_PROGRAM,
         "programs the app's code starts by a literal name (subprocess, child_process, ...)",
         reach.keep_named_programs),
    Rule("own-configuration", ReasonKind.OWN_CONFIGURATION,
         "files under /etc the image's own layers added or changed",
         reach.keep_own_configuration),
    Rule("imports", ReasonKind.IMPORT,
         "modules kept Python, Ruby and JavaScript code can import or require (static graphs)",
         reach.keep_imports),
    Rule("runtimes", ReasonKind.RUNTIME,
         "an interpreter's stdlib and native helpers (Python, Ruby, JDK, node)",
         keep_runtimes),
    Rule("timezone", ReasonKind.TIMEZONE,
         "the timezone database once /etc/localtime or any zone was read",
         keep_timezone_data),
    Rule("ca-certificates", ReasonKind.CA_CERTIFICATES,
         "CA certificates and openssl.cnf once a TLS library is kept",
         keep_ca_certificates),
    Rule("nss", ReasonKind.NSS,
         "nsswitch.conf and its NSS modules when name resolution can be used",
         keep_nss),
    Rule("gconv", ReasonKind.GCONV,
         "all gconv modules once iconv loaded one",
         keep_gconv),
    Rule("locale", ReasonKind.LOCALE,
         "the compiled locale the image's Env sets (LANG, LC_ALL)",
         keep_locale),
    Rule("empty-dirs", ReasonKind.EMPTY_DIRECTORY,
         "empty subdirectories of directories the run listed or opened",
         keep_empty_subdirectories),
)
RULE_NAMES = tuple(rule.name for rule in RULES)
