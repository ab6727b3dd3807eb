"""`python -m skindeep` runs the command-line interface."""

from skindeep.cli import main

if __name__ == "__main__":
    main()
