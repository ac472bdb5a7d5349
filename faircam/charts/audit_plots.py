"""Plotly charts of the audit pages: region parity heatmaps and method agreement (intervals: `charts.interval_dots`)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from faircam.audit.groups import size_label
from faircam.charts.plots import MARGIN


def _share_text(mean: float, high: float, flagged: bool) -> str:
    text = f"{mean:.0%}" if math.isnan(high) else f"{mean:.0%}<br>±{high - mean:.1%}"
    return f"<b>{text} ★</b>" if flagged else text


def parity_heatmap(parity: pd.DataFrame, regions: list[str]) -> go.Figure:
    """Mean share per group (rows, labelled with n) and region (columns), each cell with its interval.

    Cells are coloured by how far they sit above (red) or below (blue) the mean of their column;
    ★ marks a group that differs from the other images after false discovery rate control (`flagged`).
    """
    data = parity.copy()
    data["label"] = [size_label(g, n, s) for g, n, s in zip(data["group"], data["n"], data["small"])]
    order = list(dict.fromkeys(data["label"]))
    wide = data.pivot(index="label", columns="region", values="mean").reindex(index=order, columns=regions)
    cells = data.set_index(["label", "region"])
    text = [[_share_text(cells.loc[(g, r), "mean"], cells.loc[(g, r), "mean_high"], cells.loc[(g, r), "flagged"])
             for r in regions] for g in order]
    # Colour shows each cell against the mean of its column, so a group that stands out in one
    # region is visible even when regions differ in size; the text gives the share itself.
    deviation = wide - wide.mean(axis=0)
    fig = go.Figure(go.Heatmap(
        z=deviation.values, x=regions, y=order, text=text, texttemplate="%{text}", textfont_size=12,
        colorscale="RdBu_r", zmid=0, customdata=wide.values,
        colorbar=dict(title="vs column<br>mean", tickformat="+.0%"),
        hovertemplate="%{y}<br>%{x}: %{customdata:.1%} (%{z:+.1%} vs the groups' mean)<extra></extra>",
    ))
    fig.update_layout(yaxis_autorange="reversed", height=max(260, 44 * len(order) + 80), margin=MARGIN,
                      xaxis_side="top")
    return fig


def agreement_heatmap(matrix: pd.DataFrame) -> go.Figure:
    """Mean agreement between every pair of methods (1.0 = identical maps)."""
    fig = go.Figure(go.Heatmap(
        z=matrix.values, x=list(matrix.columns), y=list(matrix.index), text=matrix.map("{:.2f}".format).values,
        texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1, showscale=False,
    ))
    fig.update_layout(yaxis_autorange="reversed", height=320, margin=MARGIN)
    return fig
