"""The command line (`python -m sensitivity COMMAND`): every parser (`parsers`), what serve,
train, evaluate and card do (`commands`), the `explain` command and the argument types
(`args`)."""
