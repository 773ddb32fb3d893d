"""One module per `tinymlaas` sub-command; see tinymlaas.cli."""
