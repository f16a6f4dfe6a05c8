"""A small Wagtail site (tests/test_fidelity.py runs it in a child process): two page
types served by Wagtail's one view through its one catch-all route."""
