"""Command-line entry points: ``main`` plus one small module per subcommand."""
