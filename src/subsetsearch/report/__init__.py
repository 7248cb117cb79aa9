"""Analyses and figures over stored run directories (matplotlib, written as PNG)."""
