"""Capacity planning: a discrete-event simulation of the fleet's queue (``sonic-runner plan``).

Plain Python (stdlib only), so a planner runs it anywhere the runner installs.
"""
