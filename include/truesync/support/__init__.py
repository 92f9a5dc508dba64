"""Foundations every layer may use: where files live, connection URLs, SQL engines, DataFrame rows.

Nothing here imports another truesync module.
"""
