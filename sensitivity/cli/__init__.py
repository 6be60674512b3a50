"""The command line (`python -m sensitivity COMMAND`): argument types (`args`) and the
`explain` command."""
