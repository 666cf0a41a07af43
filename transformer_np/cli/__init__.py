r"""The command line, the top floor: ``main`` parses arguments and one module per command turns the library's
results into text, plots and exit statuses.  Nothing else in the package prints or parses arguments."""
