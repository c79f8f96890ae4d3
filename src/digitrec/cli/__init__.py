"""The `digitrec` command line: main.py assembles one module per subcommand, each holding its
options and what it runs (fetch, train, evaluate, predict, serve, export); options.py holds
the pieces they share."""
