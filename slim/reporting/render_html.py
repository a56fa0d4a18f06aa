"""`slim report --format html`: one self-contained file. Inline CSS, SVG charts drawn here, no script, no
font, image or style from anywhere else; a Content-Security-Policy makes the browser refuse any request."""
from __future__ import annotations

from html import escape

from slim.build.sizes import human_size

from .comparison import Comparison, ImageSummary
from .render_report import before_after, packages_text, ratio_text, still_there, verification_text

CHART_WIDTH = 900
LABEL_WIDTH = 260  # left column of the charts: the image names
VALUE_WIDTH = 140  # right of a bar: its value
BAR = 18
# Colour-blind-safe (Okabe-Ito), then greys for the long tail of directories.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#999999", "#666666", "#BBBBBB", "#444444")
ORIGINAL_COLOUR = "#9aa5b1"
SLIMMED_COLOUR = "#009E73"

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1000px;
       color: #1f2933; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d9e2ec; padding-bottom: .3rem; }
h3 { font-size: 1rem; margin-top: 1.5rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .3rem .7rem; border-bottom: 1px solid #e4e7eb; text-align: left; vertical-align: top; }
th { background: #f5f7fa; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.meta { color: #52606d; }
.passed, .PASS { color: #0a7a3e; font-weight: 600; }
.failed, .FAIL { color: #c62828; font-weight: 600; }
.skipped, .SKIP { color: #8a6d00; font-weight: 600; }
svg.chart { max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2933; }
svg .value { fill: #52606d; }
.legend { display: flex; flex-wrap: wrap; gap: .4rem 1rem; margin: .3rem 0 1rem; padding: 0; list-style: none; }
.legend li { display: flex; align-items: center; gap: .35rem; }
.swatch { width: 12px; height: 12px; display: inline-block; border-radius: 2px; }
"""


def render_html(comparison: Comparison) -> str:
    images = comparison.images
    count = len(images)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: not even a favicon or a font.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>slimtrace report: {count} image{'s' if count != 1 else ''}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>slimtrace report</h1>",
        f'<p class="meta">{count} image{"s" if count != 1 else ""} slimmed by tracing what they use.</p>',
        "<h2>Image size before and after</h2>",
        size_chart(images),
        "<h2>Removed bytes by directory</h2>",
        removed_chart(images),
        "<h2>Images</h2>",
        _summary_table(images),
    ]
    if comparison.gates:
        parts += ["<h2>Gates</h2>", _gates_table(comparison)]
    for image in images:
        parts += _image_section(image)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------- charts


def size_chart(images: tuple[ImageSummary, ...]) -> str:
    """Two bars per image, original and slimmed, on one linear scale."""
    largest = max((max(i.original_size, i.slimmed_size) for i in images), default=0) or 1
    bar_space = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    group = 2 * BAR + 18
    height = group * len(images) + 30
    out = [_svg_open(height, "Image size before and after slimming, per image")]
    for n, image in enumerate(images):
        top = n * group
        out.append(f'<text x="0" y="{top + BAR + 4}">{escape(_short(image.image))}<title>{escape(image.image)}</title></text>')
        for row, (label, size, colour) in enumerate(
            (("original", image.original_size, ORIGINAL_COLOUR), ("slimmed", image.slimmed_size, SLIMMED_COLOUR))
        ):
            y = top + row * (BAR + 2)
            width = max(1.0, bar_space * size / largest)
            out.append(
                f'<rect class="bar {label}" x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{BAR}" '
                f'fill="{colour}" rx="2"><title>{escape(image.image)} {label}: {human_size(size)}</title></rect>'
            )
            out.append(
                f'<text class="value" x="{LABEL_WIDTH + width + 6:.1f}" y="{y + BAR - 5}">'
                f"{label} {human_size(size)}</text>"
            )
    legend_y = group * len(images) + 16
    out.append(_legend_svg(legend_y, (("original", ORIGINAL_COLOUR), ("slimmed", SLIMMED_COLOUR))))
    out.append("</svg>")
    return "\n".join(out)


def removed_chart(images: tuple[ImageSummary, ...]) -> str:
    """One stacked bar per image: the bytes slimming removed, split by top-level directory."""
    directories = sorted({d.path for i in images for d in i.dirs if d.removed},
                         key=lambda p: -sum(d.removed for i in images for d in i.dirs if d.path == p))
    colours = {path: PALETTE[n % len(PALETTE)] for n, path in enumerate(directories)}
    largest = max((sum(d.removed for d in i.dirs) for i in images), default=0) or 1
    bar_space = CHART_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    group = BAR + 14
    height = group * len(images) + 4
    out = [_svg_open(height, "Bytes removed by slimming, per image, split by top-level directory")]
    for n, image in enumerate(images):
        y = n * group
        out.append(f'<text x="0" y="{y + BAR - 4}">{escape(_short(image.image))}<title>{escape(image.image)}</title></text>')
        x = float(LABEL_WIDTH)
        for d in sorted(image.dirs, key=lambda d: directories.index(d.path) if d.path in colours else 0):
            if not d.removed:
                continue
            width = bar_space * d.removed / largest
            out.append(
                f'<rect class="segment" x="{x:.1f}" y="{y}" width="{max(width, 0.5):.1f}" height="{BAR}" '
                f'fill="{colours[d.path]}"><title>{escape(d.path)}: {human_size(d.removed)} removed</title></rect>'
            )
            x += width
        total = sum(d.removed for d in image.dirs)
        out.append(f'<text class="value" x="{x + 6:.1f}" y="{y + BAR - 4}">{human_size(total)}</text>')
    out.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{colours[p]}"></span><code>{escape(p)}</code></li>'
        for p in directories
    )
    return "\n".join(out) + f'\n<ul class="legend">{legend}</ul>'


def _svg_open(height: int, label: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" width="{CHART_WIDTH}" height="{height}" '
        f'viewBox="0 0 {CHART_WIDTH} {height}">'
    )


def _legend_svg(y: int, items: tuple[tuple[str, str], ...]) -> str:
    out = []
    x = LABEL_WIDTH
    for label, colour in items:
        out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{colour}" rx="2"></rect>')
        out.append(f'<text x="{x + 16}" y="{y}">{escape(label)}</text>')
        x += 100
    return "\n".join(out)


def _short(name: str, limit: int = 38) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


# ---------------------------------------------------------------- tables


def _summary_table(images: tuple[ImageSummary, ...]) -> str:
    rows = [
        "<table><thead><tr><th>Image</th><th class=num>Original</th><th class=num>Slimmed</th>"
        "<th class=num>Ratio</th><th class=num>Compressed</th><th class=num>Files</th><th>Verification</th>"
        "</tr></thead><tbody>"
    ]
    for image in images:
        rows.append(
            f"<tr><td><code>{escape(image.image)}</code></td>"
            f"<td class=num>{human_size(image.original_size)}</td><td class=num>{human_size(image.slimmed_size)}</td>"
            f"<td class=num>{ratio_text(image.ratio)}</td>"
            f"<td class=num>{escape(before_after(image.original_compressed, image.slimmed_compressed, '→'))}</td>"
            f"<td class=num>{image.original_files:,} → {image.slimmed_files:,}</td>"
            f'<td class="{escape(image.verification)}">{escape(verification_text(image))}</td></tr>'
        )
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _gates_table(comparison: Comparison) -> str:
    rows = ["<table><thead><tr><th>Image</th><th>Gate</th><th>Result</th><th>Measured</th><th>Threshold</th>"
            "</tr></thead><tbody>"]
    for outcome in comparison.gates:
        for r in outcome.results:
            rows.append(
                f"<tr><td><code>{escape(outcome.image)}</code></td><td><code>--{escape(r.gate)}</code></td>"
                f'<td class="{r.status.value}">{r.status.value}</td><td>{escape(r.measured or r.why)}</td>'
                f"<td>{escape(r.threshold)}</td></tr>"
            )
    rows.append("</tbody></table>")
    rows += [f'<p class="{"FAIL" if o.failed else "PASS"}">{escape(o.image)}: {escape(o.tally())}</p>'
             for o in comparison.gates]
    return "\n".join(rows)


def _image_section(image: ImageSummary) -> list[str]:
    parts = [
        f"<h3><code>{escape(image.image)}</code></h3>",
        f'<p class="meta">slimmed image <code>{escape(image.slimmed_tag or "(not tagged)")}</code> '
        f"<code>{escape(image.slimmed_id[:19])}</code>; report <code>{escape(image.report)}</code></p>",
    ]
    if image.dirs:
        parts.append("<table><thead><tr><th>Directory</th><th class=num>Kept</th><th class=num>Removed</th></tr>"
                     "</thead><tbody>")
        parts += [
            f"<tr><td><code>{escape(d.path)}</code></td><td class=num>{human_size(d.kept)}</td>"
            f"<td class=num>{human_size(d.removed)}</td></tr>"
            for d in image.dirs
        ]
        parts.append("</tbody></table>")
    if image.largest_removed:
        parts.append("<table><thead><tr><th>Largest removed files</th><th class=num>Size</th></tr></thead><tbody>")
        parts += [f"<tr><td><code>{escape(path)}</code></td><td class=num>{human_size(size)}</td></tr>"
                  for path, size in image.largest_removed]
        parts.append("</tbody></table>")
    if image.surface:
        parts.append(_surface_table(image))
    if image.packages:
        parts.append(f'<p class="packages">OS packages: {escape(packages_text(image.packages, "→"))}</p>')
    return parts


def _surface_table(image: ImageSummary) -> str:
    """Original against slimmed per attack-surface category, naming what the slimmed image still has."""
    head = "<th>Attack surface</th><th class=num>Original</th><th class=num>Slimmed</th><th>Still there</th>"
    body = "".join(
        f"<tr><td>{escape(row.label)}</td><td class=num>{row.original}</td><td class=num>{len(row.slimmed)}</td>"
        f"<td><code>{escape(still_there(row))}</code></td></tr>"
        for row in image.surface
    )
    return f'<table class="surface"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
