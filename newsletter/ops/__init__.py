"""Running the service: metrics, readiness, log lines, the all-in-one development server and
its demo data.

Pieces ops use, built on the core packages.
"""
