"""Plotly charts and matplotlib figures drawn from the audit's tables and the explanations."""
