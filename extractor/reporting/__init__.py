"""Reports on finished runs: tables, plots, comparisons, profiles."""
