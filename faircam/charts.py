"""Plotly charts of cached metrics, drawn by the pages."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def confusion_heatmap(matrix: pd.DataFrame) -> go.Figure:
    """Counts with row percentages, true class down the side."""
    share = matrix.div(matrix.sum(axis=1).replace(0, 1), axis=0)
    text = [[f"{count}<br>({p:.0%} of {t})" for count, p in zip(matrix.loc[t], share.loc[t])] for t in matrix.index]
    fig = go.Figure(
        go.Heatmap(
            z=share.values, x=list(matrix.columns), y=list(matrix.index), text=text, texttemplate="%{text}",
            colorscale="Blues", zmin=0, zmax=1, showscale=False,
        )
    )
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=340, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def group_accuracy_bars(table: pd.DataFrame, by: list[str], overall: float | None = None) -> go.Figure:
    """Accuracy per group with its 95% interval, n in the group's label (see `interval_dots`)."""
    return interval_dots(table.rename(columns={"ci_low": "accuracy_low", "ci_high": "accuracy_high"}),
                         "accuracy", by, overall)


def interval_dots(table: pd.DataFrame, rate: str, by: list[str], overall: float | None = None,
                  title: str | None = None) -> go.Figure:
    """One rate per group as a dot with its 95% interval, in the table's order.

    `table` has the grouping columns, `rate`, `<rate>_low`, `<rate>_high`, `n` and `small`. Each
    label carries the group's n and small groups are marked; groups without the rate (NaN) are left
    out. Dots, not bars: the axis need not start at zero to show differences of a few points honestly.
    """
    data = table.dropna(subset=[rate]).copy()
    data["label"] = [f"{g} (n={n}){' ⚠ small' if s else ''}" for g, n, s in
                     zip(data[by].astype(str).agg(" / ".join, axis=1), data["n"], data["small"])]
    fig = px.scatter(
        data, x=rate, y="label", color=by[-1] if len(by) > 1 else None, text=[f"{v:.1%}" for v in data[rate]],
        error_x=data[f"{rate}_high"] - data[rate], error_x_minus=data[rate] - data[f"{rate}_low"],
        category_orders={"label": list(data["label"])},
    )
    low = float(data[f"{rate}_low"].min()) if len(data) else 0.0
    low = 0.0 if low < 0.3 else low - 0.05  # rates near zero (women called male) read best from zero
    fig.update_traces(marker_size=10, textposition="top center", textfont_size=11, cliponaxis=False)
    fig.update_layout(xaxis_range=[low, 1.0], xaxis_tickformat=".0%", yaxis_title=None, xaxis_title=title or rate,
                      height=max(200, 38 * len(data) + 90), margin=dict(l=10, r=10, t=30, b=10),
                      legend_title=None)
    if overall is not None:
        fig.add_vline(x=overall, line_dash="dot", annotation_text=f"overall {overall:.1%}")
    return fig


def equalized_odds_plot(groups: pd.DataFrame) -> go.Figure:
    """Each group as a point: women called male (FPR) across, men called male (TPR) up, with intervals.

    Equal odds put every group on the same point; the best corner is top left."""
    data = groups.dropna(subset=["tpr", "fpr"])
    data = data[~data["small"]]
    fig = go.Figure(
        go.Scatter(
            x=data["fpr"], y=data["tpr"], mode="markers+text", text=data["group"], textposition="top center",
            marker=dict(size=10),
            error_x=dict(type="data", array=data["fpr_high"] - data["fpr"], arrayminus=data["fpr"] - data["fpr_low"]),
            error_y=dict(type="data", array=data["tpr_high"] - data["tpr"], arrayminus=data["tpr"] - data["tpr_low"]),
            customdata=data[["men", "women"]],
            hovertemplate="%{text}<br>TPR %{y:.1%} of %{customdata[0]} men<br>"
                          "FPR %{x:.1%} of %{customdata[1]} women<extra></extra>",
        )
    )
    fig.update_layout(xaxis_title="women called male (FPR)", yaxis_title="men called male (TPR)",
                      xaxis_tickformat=".0%", yaxis_tickformat=".0%", height=420, margin=dict(l=10, r=10, t=30, b=10))
    return fig


def gap_intervals(gaps: pd.DataFrame) -> go.Figure:
    """Each defined gap as a point with its 95% interval, on one 0-based axis."""
    data = gaps.dropna(subset=["value"])
    fig = go.Figure(
        go.Scatter(
            x=data["value"], y=list(data.index), mode="markers+text", marker=dict(size=11),
            text=[f"{v:.1%}" for v in data["value"]], textposition="top center",
            error_x=dict(type="data", array=data["ci_high"] - data["value"], arrayminus=data["value"] - data["ci_low"]),
        )
    )
    fig.update_layout(xaxis_tickformat=".0%", xaxis_range=[0, max(0.3, float(data["ci_high"].max()) + 0.05)
                                                          if len(data) else 0.3],
                      xaxis_title="difference between groups (0 = equal)", yaxis_autorange="reversed",
                      height=80 + 60 * len(data), margin=dict(l=10, r=10, t=20, b=10))
    return fig


def focus_bars(table: pd.DataFrame, regions: list[str]) -> go.Figure:
    """Share of CAM energy per face region for each method (stacked to 100%)."""
    long = table.melt(id_vars="method", value_vars=regions, var_name="region", value_name="share")
    fig = px.bar(long, x="share", y="method", color="region", orientation="h", text_auto=".0%")
    fig.update_layout(xaxis_tickformat=".0%", xaxis_range=[0, 1], height=260, barmode="stack",
                      margin=dict(l=10, r=10, t=30, b=10), legend_title=None)
    return fig
