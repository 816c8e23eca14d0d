"""SQLite whose transactions begin IMMEDIATE, on every supported Django.

Django 5.1 has ``OPTIONS["transaction_mode"]``; 4.2 has not. The processes
of the projection tests (writers and runners at once) need each transaction
to take SQLite's write lock when it begins, waiting for it, rather than fail
with "database is locked" when a transaction that has read cannot upgrade
to writing.
"""
