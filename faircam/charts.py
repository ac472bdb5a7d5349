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
    """Accuracy per group with its 95% interval as error bars and n in the label."""
    data = table.copy()
    data["group"] = data[by].astype(str).agg(" / ".join, axis=1)
    data["label"] = [f"{a:.1%} (n={n}){' ⚠ small' if s else ''}"
                     for a, n, s in zip(data["accuracy"], data["n"], data["small"])]
    fig = px.bar(
        data, x="accuracy", y="group", orientation="h", text="label",
        color=by[-1] if len(by) > 1 else None,
        error_x=data["ci_high"] - data["accuracy"], error_x_minus=data["accuracy"] - data["ci_low"],
    )
    low = max(0.0, float(data["ci_low"].min()) - 0.05) if len(data) else 0.0
    fig.update_layout(xaxis_range=[low, 1.0], xaxis_tickformat=".0%", yaxis_title=None,
                      height=max(260, 34 * len(data) + 80), margin=dict(l=10, r=10, t=30, b=10),
                      yaxis_categoryorder="total ascending")
    fig.update_traces(textposition="inside", insidetextanchor="start")
    if overall is not None:
        fig.add_vline(x=overall, line_dash="dot", annotation_text=f"overall {overall:.1%}")
    return fig


def focus_bars(table: pd.DataFrame, regions: list[str]) -> go.Figure:
    """Share of CAM energy per face region for each method (stacked to 100%)."""
    long = table.melt(id_vars="method", value_vars=regions, var_name="region", value_name="share")
    fig = px.bar(long, x="share", y="method", color="region", orientation="h", text_auto=".0%")
    fig.update_layout(xaxis_tickformat=".0%", xaxis_range=[0, 1], height=260, barmode="stack",
                      margin=dict(l=10, r=10, t=30, b=10), legend_title=None)
    return fig
