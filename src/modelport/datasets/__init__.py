"""Datasets: reading and validating uploaded files, scikit-learn's bundled ones, feature profiles."""
