"""`slim report` for people: plain text for a terminal or a CI log, markdown for a pull request or
$GITHUB_STEP_SUMMARY. Both read a Comparison; neither computes anything it does not hold."""
from __future__ import annotations

from html import escape
from pathlib import PurePosixPath

from slim.build.sizes import human_size
from .comparison import Comparison, ImageSummary, Packages, SurfaceRow
from .ci_gates import GateOutcome
from slim.safe_text import printable

VERIFICATION_MARK = {"passed": "✅ passed", "failed": "❌ FAILED", "skipped": "⚠️ skipped"}


def ratio_text(ratio: float | None) -> str:
    return f"{ratio:g}x" if ratio is not None else "n/a"


def before_after(original: int | None, slimmed: int | None, arrow: str = "->") -> str:
    if original is None and slimmed is None:
        return "n/a"
    return f"{human_size(original) if original is not None else 'n/a'} {arrow} {human_size(slimmed)}"


def packages_text(packages: Packages, arrow: str = "->") -> str:
    if packages.database == "removed":
        return f"{packages.original} {arrow} none visible: no package database, scanners will see nothing"
    return f"{packages.original} {arrow} {packages.kept} (database entries of the kept packages, licenses kept)"


def still_there(row: SurfaceRow) -> str:
    return ", ".join(PurePosixPath(path).name for path in row.slimmed) or "none"


def verification_text(image: ImageSummary) -> str:
    checks = f" ({image.checks} checks)" if image.checks else ""
    return f"{image.verification}{checks}"


# ---------------------------------------------------------------- text


def render_text(comparison: Comparison) -> str:
    rows = [("IMAGE", "ORIGINAL", "SLIMMED", "RATIO", "COMPRESSED", "FILES", "VERIFICATION")]
    for image in comparison.images:
        rows.append(
            (
                image.image,
                human_size(image.original_size),
                human_size(image.slimmed_size),
                ratio_text(image.ratio),
                before_after(image.original_compressed, image.slimmed_compressed),
                f"{image.original_files:,} -> {image.slimmed_files:,}",
                verification_text(image),
            )
        )
    lines = _table(rows, right={1, 2, 3, 4, 5})
    for image in comparison.images:
        lines += ["", *_image_text(image)]
    for outcome in comparison.gates:
        lines += ["", *gate_lines(outcome)]
    return "\n".join(lines)


def _compressed_by(image: ImageSummary) -> str:
    """How the compressed figures were obtained, when the reports say: "; original estimated, slimmed measured"."""
    said = [f"{which} {how}" for which, how in (("original", image.original_compressed_by),
                                                  ("slimmed", image.slimmed_compressed_by)) if how]
    return f"; {', '.join(said)}" if said else ""


def _image_text(image: ImageSummary) -> list[str]:
    lines = [
        image.image,
        f"  uncompressed    {before_after(image.original_size, image.slimmed_size)}  ({ratio_text(image.ratio)} smaller)",
        f"  compressed      {before_after(image.original_compressed, image.slimmed_compressed)}"
        f"  ({ratio_text(image.compressed_ratio)} smaller, gzip as a registry stores it{_compressed_by(image)})",
        f"  files           {image.original_files:,} -> {image.slimmed_files:,}",
        f"  verification    {verification_text(image)}",
        f"  slimmed image   {image.slimmed_tag or '(not tagged)'}  {image.slimmed_id[:19]}",
        f"  report          {image.report}",
    ]
    if image.warnings:
        lines.append(f"  warnings        {image.warnings} (in the report)")
    if image.dirs:
        lines += ["", *("  " + line for line in _table(
            [("DIRECTORY", "KEPT", "REMOVED")]
            + [(d.path, human_size(d.kept), human_size(d.removed)) for d in image.dirs],
            right={1, 2},
        ))]
    if image.largest_removed:
        lines += ["", "  largest removed files"]
        lines += [f"  {human_size(size):>9}  {path}" for path, size in image.largest_removed]
    if image.surface:
        lines += ["", "  attack surface (original -> slimmed)"]
        lines += ["  " + line for line in _table(
            [("CATEGORY", "ORIGINAL", "SLIMMED", "STILL THERE")]
            + [(row.label, str(row.original), str(len(row.slimmed)), still_there(row)) for row in image.surface],
            right={1, 2},
        )]
    if image.packages:
        lines.append(f"  OS packages     {packages_text(image.packages)}")
    return lines


def gate_lines(outcome: GateOutcome) -> list[str]:
    """dive's CI shape: one PASS/FAIL/SKIP line per gate, then the tally."""
    return [f"Gates for {outcome.image}:", *(f"  {r.line()}" for r in outcome.results), outcome.tally()]


def _table(rows: list[tuple[str, ...]], right: set[int] = frozenset()) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    ]


# ---------------------------------------------------------------- markdown


def render_markdown(comparison: Comparison) -> str:
    count = len(comparison.images)
    lines = [
        f"## slimtrace: {count} image{'s' if count != 1 else ''}",
        "",
        "| Image | Original | Slimmed | Ratio | Compressed (original → slimmed) | Files | Verification |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for image in comparison.images:
        lines.append(
            f"| {_code(image.image)} | {human_size(image.original_size)} | {human_size(image.slimmed_size)} "
            f"| {ratio_text(image.ratio)} | {before_after(image.original_compressed, image.slimmed_compressed, '→')} "
            f"| {image.original_files:,} → {image.slimmed_files:,} "
            f"| {VERIFICATION_MARK.get(image.verification, image.verification)} |"
        )
    if comparison.gates:
        lines += ["", "### Gates", "", "| Image | Gate | Result | Measured | Threshold |", "|---|---|---|---|---|"]
        for outcome in comparison.gates:
            for r in outcome.results:
                measured = r.measured or r.why
                lines.append(
                    f"| {_code(outcome.image)} | `--{r.gate}` | {_status(r.status.value)} | {_cell(measured)} "
                    f"| {_cell(r.threshold)} |"
                )
        lines += [""] + [f"{_code(o.image)}: **{o.tally()}**" for o in comparison.gates]
    for image in comparison.images:
        lines += ["", *_image_markdown(image)]
    return "\n".join(lines) + "\n"


def _image_markdown(image: ImageSummary) -> list[str]:
    lines = [
        "<details>",
        # Markdown is not read inside an HTML block: the summary line is HTML of its own.
        f"<summary><code>{escape(image.image)}</code>: what was kept and removed</summary>",
        "",
        f"Slimmed image {_code(image.slimmed_tag or '(not tagged)')}; report {_code(image.report)}.",
    ]
    if image.dirs:
        lines += ["", "| Directory | Kept | Removed |", "|---|--:|--:|"]
        lines += [f"| {_code(d.path)} | {human_size(d.kept)} | {human_size(d.removed)} |" for d in image.dirs]
    if image.largest_removed:
        lines += ["", "| Largest removed files | Size |", "|---|--:|"]
        lines += [f"| {_code(path)} | {human_size(size)} |" for path, size in image.largest_removed]
    if image.surface:
        lines += ["", "| Attack surface | Original | Slimmed | Still there |", "|---|--:|--:|---|"]
        lines += [f"| {row.label} | {row.original} | {len(row.slimmed)} | {_cell(still_there(row))} |"
                  for row in image.surface]
    if image.packages:
        lines += ["", f"OS packages: {packages_text(image.packages, '→')}."]
    lines += ["", "</details>"]
    return lines


def _status(value: str) -> str:
    return {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "SKIP": "➖ SKIP"}[value]


def _code(text: str) -> str:
    """An inline code span safe inside a table cell (a pipe or a newline would end the cell)."""
    text = printable(text, one_line=True).replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def _cell(text: str) -> str:
    return printable(text, one_line=True).replace("|", "\\|") if text else "—"
