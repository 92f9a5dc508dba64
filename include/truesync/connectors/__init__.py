"""Connectors: how truesync reads and writes each kind of system (SQL databases, REST APIs).

``registry`` opens a system by its kind; ``errors`` holds the failures the DAGs tell apart.
"""
