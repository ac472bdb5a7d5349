"""Plotly charts of cached metrics, drawn by the pages: one function per kind of chart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from faircam.audit.accuracy import row_shares
from faircam.audit.groups import MEASURES, label, size_label
from faircam.tasks import Task

MARGIN = dict(l=10, r=10, t=30, b=10)


def confusion_heatmap(matrix: pd.DataFrame) -> go.Figure:
    """Counts with each row's shares (true class down the side, in the task's class order), coloured by share.

    Nine age bins make 81 cells: the figure grows with the classes and each cell says its count and its
    share of the row in two short lines, so the 9×9 matrix stays readable in half a page."""
    share = row_shares(matrix)
    names = [label(c) for c in matrix.index]
    text = [[f"{count:,}<br>{p:.0%}" for count, p in zip(matrix.loc[t], share.loc[t])] for t in matrix.index]
    k = len(matrix)
    fig = go.Figure(
        go.Heatmap(
            z=share.values, x=names, y=names, text=text, texttemplate="%{text}",
            textfont_size=13 if k <= 3 else 11, colorscale="Blues", zmin=0, zmax=1, showscale=False,
            hovertemplate="true %{y}, predicted %{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(xaxis_title="predicted", yaxis_title="true (each row's shares add up to 100%)",
                      yaxis_autorange="reversed", height=max(340, 52 * k + 150), margin=MARGIN,
                      xaxis_tickangle=-35 if k > 2 else 0, xaxis_side="bottom")
    return fig


# A curve has a point per distinct score: some 14,000 per race group on FairFace's full 97,698 images, megabytes
# of chart for the browser, while a 460-pixel chart shows no more than a few hundred.
MAX_CURVE_POINTS = 400


def _thinned(values: np.ndarray, points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """At most `points` of a curve's values, evenly spaced along it, its first and last kept."""
    return values[np.unique(np.linspace(0, len(values) - 1, min(points, len(values))).round().astype(int))]


def pr_curves(curves: pd.DataFrame, positive: str) -> go.Figure:
    """One precision-recall curve per group (`faircam.audit.accuracy.pr_curves`), each named with its n,
    small groups marked, and its average precision (AP, from the whole curve; drawn: `MAX_CURVE_POINTS`)."""
    fig = go.Figure([
        go.Scatter(x=_thinned(row["recall"]), y=_thinned(row["precision"]), mode="lines", line_shape="hv",
                   name=f"{size_label(row['group'], int(row['n']), row['small'])} · AP {row['average_precision']:.2f}",
                   hovertemplate=f"{row['group']}<br>recall %{{x:.1%}}<br>precision %{{y:.1%}}<extra></extra>")
        for _, row in curves.iterrows()
    ])
    fig.update_layout(xaxis_title=f"recall: share of the group's {positive} faces called {positive}",
                      yaxis_title=f"precision: share of {positive} calls that are right", xaxis_tickformat=".0%",
                      yaxis_tickformat=".0%", xaxis_range=[0, 1.01], height=460, margin=MARGIN,
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig


def interval_dots(table: pd.DataFrame, value: str, color: str | None = None, percent: bool = True,
                  reference: float | None = None, title: str | None = None,
                  reference_label: str | None = None) -> go.Figure:
    """An estimate per group as a dot with its 95% interval as a whisker, in the table's order.

    `table` is a group table (`faircam.audit.groups.group_table`, or a long table built from one): `group`,
    `n`, `small`, `value`, `<value>_low`, `<value>_high`. Each label carries the group's n (on a line of
    its own) and small groups are marked (`size_label`); rows without the estimate (NaN) are left out. With
    `color`, several dots of one group (one per view or method) sit side by side. Dots, not bars: the axis need
    not start at zero to show differences of a few points honestly. A `reference` line is named in the axis title,
    as `reference_label` or, by default, as the overall value.
    """
    data = table.dropna(subset=[value]).copy()
    sizes = data.groupby("group", sort=False).agg(n=("n", "max"), small=("small", "any"))
    # The n on a second line: "Latino Hispanic / Female (n=191)" on one line is cut in a column of a narrow screen.
    names = {g: size_label(g, int(r.n), bool(r.small)).replace(" (n=", "<br>(n=") for g, r in sizes.iterrows()}
    data["label"] = data["group"].map(names)
    fig = px.scatter(
        data, x=value, y="label", color=color, error_x=data[f"{value}_high"] - data[value],
        error_x_minus=data[value] - data[f"{value}_low"],
        text=[f"{v:.1%}" for v in data[value]] if percent and color is None else None,
        labels={value: title or value, "label": "group"},  # the hover's words
    )
    for trace in fig.data:
        trace.offsetgroup = trace.name
    colours = data[color].nunique() if color else 1
    fig.update_traces(marker_size=10 if color is None else 9, textposition="top center", textfont_size=11,
                      cliponaxis=False)
    fig.update_layout(yaxis_title=None, xaxis_title=title, margin=MARGIN, legend_title=None, scattermode="group",
                      height=max(220, (14 * colours + 24) * len(names) + 90), legend_orientation="h",
                      legend_y=1.02, legend_yanchor="bottom")
    fig.update_yaxes(categoryorder="array", categoryarray=list(names.values())[::-1])
    if percent:
        fig.update_layout(xaxis_tickformat=".0%")
        low = float(data[f"{value}_low"].min()) if len(data) else 0.0
        if low >= 0:  # a rate: rates near zero (women called male) read best from zero
            fig.update_layout(xaxis_range=[0.0 if low < 0.3 else low - 0.05, 1.0])
    if reference is not None:
        # Named in the axis title: written at the line's top it covered the first group's value.
        fig.add_vline(x=reference, line_dash="dot")
        if percent:
            fig.update_layout(xaxis_title=f"{title or value} (dotted line: "
                                          f"{reference_label or f'overall {reference:.1%}'})")
    return fig


def equalized_odds_plot(groups: pd.DataFrame, task: Task) -> go.Figure:
    """Each group as a point of a binary task: its FPR across (women called male), its TPR up (men called male),
    with intervals, and its negative and positive people counted (`metrics.fairness`' columns).

    Equal odds put every group on the same point; the best corner is top left."""
    negatives, positives = task.people
    data = groups.dropna(subset=["tpr", "fpr"])
    data = data[~data["small"]]
    # One trace per group, named in the legend: labels written beside the markers covered each other.
    fig = go.Figure([
        go.Scatter(
            x=[row["fpr"]], y=[row["tpr"]], mode="markers", name=row["group"], marker=dict(size=11),
            error_x=dict(type="data", array=[row["fpr_high"] - row["fpr"]], arrayminus=[row["fpr"] - row["fpr_low"]]),
            error_y=dict(type="data", array=[row["tpr_high"] - row["tpr"]], arrayminus=[row["tpr"] - row["tpr_low"]]),
            hovertemplate=f"{row['group']}<br>TPR %{{y:.1%}} of {row[positives]} {positives}<br>"
                          f"FPR %{{x:.1%}} of {row[negatives]} {negatives}<extra></extra>",
        )
        for _, row in data.iterrows()
    ])
    fig.update_layout(xaxis_title=MEASURES["fpr"].title_for(task), yaxis_title=MEASURES["tpr"].title_for(task),
                      xaxis_tickformat=".0%", yaxis_tickformat=".0%", height=480, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))
    return fig


def focus_bars(table: pd.DataFrame, regions: list[str]) -> go.Figure:
    """Share of CAM energy per face region for each method (stacked to 100%)."""
    long = table.melt(id_vars="method", value_vars=regions, var_name="region", value_name="share")
    fig = px.bar(long, x="share", y="method", color="region", orientation="h", text_auto=".0%")
    fig.update_layout(xaxis_tickformat=".0%", xaxis_range=[0, 1], height=260, barmode="stack",
                      margin=MARGIN, legend_title=None)
    return fig


# Plotly's own type size, which a chart's axes and legend use unless told otherwise.
BASE_FONT = 12


def scaled(fig: go.Figure, factor: float) -> go.Figure:
    """`fig` with its type, markers and height grown by `factor` (presentation mode: a chart's text does not follow
    the page's type size)."""
    fig.update_layout(font_size=round((fig.layout.font.size or BASE_FONT) * factor))
    if fig.layout.height:
        fig.update_layout(height=round(fig.layout.height * factor))
    for trace in fig.data:
        if getattr(trace, "textfont", None) is not None and isinstance(trace.textfont.size, (int, float)):
            trace.textfont.size = round(trace.textfont.size * factor)
        marker = getattr(trace, "marker", None)
        if marker is not None and isinstance(getattr(marker, "size", None), (int, float)):
            marker.size = round(marker.size * factor)
    return fig
