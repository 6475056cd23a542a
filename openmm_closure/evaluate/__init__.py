"""Scoring a trained model: the numpy metrics, the registry of metric kinds, the
evaluation reports and the diagnostics of what the closure variables explain.

A namespace only: it imports nothing, so that importing one module of it loads
none of the others.
"""
