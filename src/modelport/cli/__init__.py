"""The ``modelport`` command line."""
