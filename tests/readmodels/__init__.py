"""Read models kept by the projections of the tests (tests/projections.py)."""
