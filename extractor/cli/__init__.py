"""The command line: one typer app, a module per command group, one error boundary."""
