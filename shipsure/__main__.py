from shipsure.cli.main import entry

# Guarded: worker processes started by spawn or forkserver may import the main module.
if __name__ == "__main__":
    entry()
