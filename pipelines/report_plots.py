"""The report's plots: matplotlib (Agg) drawn to SVG, embedded as data URIs in <img> elements."""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from poisonguard.core.schema import QUARANTINED
from poisonguard.filters import registry
from poisonguard.pipelines.report_data import ShardFacts, threshold_for
from poisonguard.pipelines.report_text import cell, escape_visible, fmt_num, table_html

MAX_SIGNAL_PLOTS = 12


MAX_BARS = 25


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg, SVG embedded as data URIs)


def _svg_img(draw: Callable[[Any], None], width: float, height: float, alt: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    # Fixed ids and no date: the same data give the same bytes (report rebuilds are identical).
    rc: dict[str, Any] = {
        "svg.hashsalt": "poisonguard",
        "svg.fonttype": "none",
        "font.size": 8,
        "text.parse_math": False,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],
    }
    with matplotlib.rc_context(rc):  # type: ignore[arg-type]  # typed as a Literal of every key
        fig = Figure(figsize=(width, height))
        draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    # Indentation is a third of matplotlib's SVG; text sits on one line, so dropping it is safe.
    svg = re.sub(rb"\n[ ]+", b"\n", buf.getvalue())
    data = base64.b64encode(svg).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _short(label: str, limit: int = 40) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def barh_plot(
    labels: list[str], values: Sequence[float], title: str, xlabel: str, notes: list[str] | None = None
) -> str:
    labels, values = labels[:MAX_BARS], list(values[:MAX_BARS])
    shown = [_short(escape_visible(lbl, html_out=False)) for lbl in labels]
    width, height = 7.5, 0.9 + 0.22 * len(labels)
    # Margins from the label lengths (a layout engine costs more than the drawing itself).
    left = min(0.6, (0.3 + 0.065 * max((len(s) for s in shown), default=1)) / width)

    def draw(fig: Any) -> None:
        ax = fig.add_axes((left, 0.55 / height, 0.88 - left, 1 - 0.9 / height))
        y = list(range(len(labels)))
        ax.barh(y, values, color="#4878a8")
        ax.set_yticks(y, shown)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        for pos, note in enumerate(notes or []):
            ax.annotate(
                note, (values[pos], pos), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7
            )
        ax.margins(x=0.15)

    return _svg_img(draw, width, height, title)


def plot_reasons(report: dict[str, Any]) -> str:
    reasons = report.get("reasons") or {}
    if not reasons:
        return "<p>No document was dropped.</p>"
    labels = [str(k) for k in reasons]
    values = [float(v) for v in reasons.values()]
    return barh_plot(labels, values, "Documents per reason", "documents", [f"{int(v):,}" for v in values])


def _detector_of(column: str) -> str:
    found = registry.signal_of(column)
    return found[0].name if found is not None else column.split("_")[0]


Threshold = tuple[str, float]


def pick_score_columns(facts: ShardFacts, config: dict[str, Any]) -> list[tuple[str, Threshold | None]]:
    """Up to MAX_SIGNAL_PLOTS varying numeric signals, shared fairly between detectors.

    Within a detector, columns with a threshold come first (they decide); the detectors take turns,
    so one detector with twenty statistics cannot crowd the others out.
    """
    groups: dict[str, list[tuple[str, tuple[str, float] | None]]] = {}
    for col in facts.numeric_columns:
        per = facts.values.get(col) or {}
        if len({v for vs in per.values() for v in vs}) < 2:
            continue  # a constant column says nothing
        groups.setdefault(_detector_of(col), []).append((col, threshold_for(col, config)))
    for items in groups.values():
        items.sort(key=lambda item: item[1] is None)
    picked: list[tuple[str, tuple[str, float] | None]] = []
    turn = 0
    while len(picked) < MAX_SIGNAL_PLOTS and any(turn < len(items) for items in groups.values()):
        for items in groups.values():
            if turn < len(items) and len(picked) < MAX_SIGNAL_PLOTS:
                picked.append(items[turn])
        turn += 1
    order = {col: i for i, col in enumerate(facts.numeric_columns)}
    return sorted(picked, key=lambda item: order[item[0]])


def plot_scores(facts: ShardFacts, config: dict[str, Any]) -> str:
    chosen = pick_score_columns(facts, config)
    if not chosen:
        return "<p>No numeric signal varies in this run.</p>"
    ncols = 4
    nrows = math.ceil(len(chosen) / ncols)
    height = 2.0 * nrows + 0.5

    def draw(fig: Any) -> None:
        from matplotlib.lines import Line2D

        # Fixed margins: a layout engine would cost more than all the drawing.
        axes = fig.subplots(
            nrows,
            ncols,
            squeeze=False,
            gridspec_kw={
                "left": 0.05,
                "right": 0.98,
                "bottom": 0.5 / height,
                "top": 1 - 0.75 / height,
                "hspace": 0.55 / 2.0 * 2,
                "wspace": 0.3,
            },
        )
        for ax in axes.flat[len(chosen) :]:
            ax.set_visible(False)
        for ax, (col, threshold) in zip(axes.flat, chosen, strict=False):
            per = facts.values[col]
            everything = [v for vs in per.values() for v in vs]
            lo, hi = min(everything), max(everything)
            if threshold is not None:
                lo, hi = min(lo, threshold[1]), max(hi, threshold[1])
            for outcome, color in (("kept", "#4878a8"), (QUARANTINED, "#c0392b")):
                vs = per.get(outcome)
                if vs:
                    # Shares within each outcome, so a handful of quarantined documents stays visible
                    # next to millions of kept ones (a linear axis: log ticks are slow to lay out).
                    ax.hist(
                        vs,
                        bins=30,
                        range=(lo, hi if hi > lo else lo + 1),
                        histtype="step",
                        color=color,
                        weights=[1 / len(vs)] * len(vs),
                    )
            if threshold is not None:
                ax.axvline(threshold[1], color="black", linestyle="--", linewidth=1)
                ax.annotate(
                    f"{threshold[0]} {threshold[1]:g}",
                    (threshold[1], 1),
                    xycoords=("data", "axes fraction"),
                    xytext=(2, -8),
                    textcoords="offset points",
                    fontsize=6,
                )
            n_kept, n_quar = len(per.get("kept", ())), len(per.get(QUARANTINED, ()))
            ax.set_title(f"{_short(col, 34)}\n({n_kept:,} kept, {n_quar:,} quarantined)", fontsize=6.5)
            ax.tick_params(labelsize=6)
            ax.locator_params(nbins=4)
        fig.legend(
            handles=[
                Line2D([], [], color="#4878a8", label="kept"),
                Line2D([], [], color="#c0392b", label="quarantined"),
            ],
            loc="upper right",
            fontsize=7,
        )

    img = _svg_img(draw, 10, height, "Score distributions, kept vs quarantined")
    skipped = len([c for c in facts.numeric_columns if c in facts.values]) - len(chosen)
    note = (
        f"<p>Share of each outcome's documents per bin. Dashed line: the threshold in the run's config. "
        f"{skipped} more numeric signal(s) not drawn (constant or over the plot cap).</p>"
    )
    return img + note


_SIZE_BUCKETS = ((2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, 1000), (1001, 10**12))


def plot_clusters(report: dict[str, Any], facts: ShardFacts) -> str:
    parts = []
    if facts.cluster_docs_by_size:
        labels, values = [], []
        for lo, hi in _SIZE_BUCKETS:
            # A cluster of size s contributes s documents: clusters = documents / size.
            n = sum(docs / size for size, docs in facts.cluster_docs_by_size.items() if lo <= size <= hi)
            if n:
                labels.append(str(lo) if lo == hi else f"{lo}+" if hi >= 10**12 else f"{lo}-{hi}")
                values.append(round(n))
        parts.append(
            barh_plot(
                labels, values, "Duplicate clusters by size", "clusters", [f"{int(v):,}" for v in values]
            )
        )
    else:
        parts.append("<p>No duplicate clusters (or dedup was off).</p>")
    clusters = [c for c in report.get("largest_clusters") or [] if isinstance(c, dict)]
    if clusters:
        rows = []
        for c in clusters[:10]:
            cid = str(c.get("cluster_id"))
            outcomes = c.get("outcomes") or {}
            urls = facts.cluster_urls.get(cid, [])
            rows.append(
                [
                    cell(cid),
                    fmt_num(c.get("size")),
                    fmt_num(c.get("domains")),
                    html.escape(", ".join(f"{k} {v}" for k, v in outcomes.items())),
                    "<br>".join(cell(u) for u in urls),
                ]
            )
        parts.append(
            "<h3>Largest clusters (most domains first)</h3>"
            + table_html(["cluster (first member)", "size", "domains", "outcomes", "some urls"], rows)
        )
    return "".join(parts)


def plot_hosts(report: dict[str, Any]) -> str:
    hosts = [h for h in report.get("hosts") or [] if isinstance(h, dict) and h.get("docs")]
    if not hosts:
        return "<p>No document had a URL.</p>"
    top = hosts[:MAX_BARS]
    labels = [str(h.get("host")) for h in top]
    rates = [100 * (h.get(QUARANTINED) or 0) / h["docs"] for h in top]
    notes = [f"{h.get(QUARANTINED) or 0:,} / {h['docs']:,}" for h in top]
    return barh_plot(
        labels,
        rates,
        f"Quarantine rate per host (top {len(top)} hosts by documents)",
        "% of the host's documents quarantined",
        notes,
    )


def plot_languages(report: dict[str, Any]) -> str:
    langs = report.get("languages") or {}
    if not langs:
        return "<p>No language signal in this run.</p>"
    return barh_plot(
        [str(k) for k in langs],
        [float(v) for v in langs.values()],
        "Languages",
        "documents",
        [f"{int(v):,}" for v in langs.values()],
    )
