"""Where everything is kept: the engine and sessions, the tables, and their migrations.

The bottom layer: it imports only settings, and every other package stands on it.
"""
