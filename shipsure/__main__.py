from shipsure.cli.main import entry

entry()
