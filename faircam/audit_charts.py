"""Plotly charts of the audit pages: region parity heatmaps, estimates with intervals, method agreement."""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from faircam.audit import group_label

MARGIN = dict(l=10, r=10, t=30, b=10)


def _with_groups(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    data = table.copy()
    data["group"] = [group_label(row, by) for _, row in data.iterrows()]
    return data


def _share_text(mean: float, high: float) -> str:
    return f"{mean:.0%}" if math.isnan(high) else f"{mean:.0%}<br>±{high - mean:.1%}"


def parity_heatmap(parity: pd.DataFrame, by: list[str], regions: list[str]) -> go.Figure:
    """Mean share per group (rows, labelled with n) and region (columns), each cell with its interval.

    Cells are coloured by how far they sit above (red) or below (blue) the mean of their column.
    """
    data = _with_groups(parity, by)
    data["label"] = [f"{g} (n={n}){' ⚠ small' if s else ''}"
                     for g, n, s in zip(data["group"], data["n"], data["small"])]
    order = list(dict.fromkeys(data["label"]))
    wide = data.pivot(index="label", columns="region", values="mean").reindex(index=order, columns=regions)
    cells = data.set_index(["label", "region"])
    text = [[_share_text(cells.loc[(g, r), "mean"], cells.loc[(g, r), "ci_high"]) for r in regions] for g in order]
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


def interval_dots(
    table: pd.DataFrame, by: list[str], value: str, low: str, high: str, color: str | None = None,
    percent: bool = True, reference: float | None = None,
) -> go.Figure:
    """An estimate per group as a dot with its 95% interval as a whisker; n beside each group's name.

    Groups under the minimum size are marked ⚠ small in their label; with `color`, the dots of
    one group sit side by side.
    """
    data = _with_groups(table, by)
    sizes = data.groupby("group", sort=False).agg(n=("n", "max"), small=("small", "any"))
    names = {g: f"{g} (n={r.n:,}){' ⚠ small' if r.small else ''}" for g, r in sizes.iterrows()}
    data["label"] = data["group"].map(names)
    fig = px.scatter(
        data, x=value, y="label", color=color, error_x=data[high] - data[value],
        error_x_minus=data[value] - data[low], hover_data={"n": True, low: ":.3f", high: ":.3f"},
    )
    for trace in fig.data:
        trace.offsetgroup = trace.name
    fig.update_traces(marker_size=9)
    colours = data[color].nunique() if color else 1
    fig.update_layout(yaxis_title=None, xaxis_title=None, margin=MARGIN, legend_title=None, scattermode="group",
                      height=max(220, (14 * colours + 16) * len(names) + 90), legend_orientation="h",
                      legend_y=1.02, legend_yanchor="bottom")
    fig.update_yaxes(categoryorder="array", categoryarray=list(names.values())[::-1])
    if percent:
        fig.update_layout(xaxis_tickformat=".0%")
    if reference is not None:
        fig.add_vline(x=reference, line_dash="dot")
    return fig


def agreement_heatmap(matrix: pd.DataFrame) -> go.Figure:
    """Mean agreement between every pair of methods (1.0 = identical maps)."""
    fig = go.Figure(go.Heatmap(
        z=matrix.values, x=list(matrix.columns), y=list(matrix.index), text=matrix.map("{:.2f}".format).values,
        texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=1, showscale=False,
    ))
    fig.update_layout(yaxis_autorange="reversed", height=320, margin=MARGIN)
    return fig
