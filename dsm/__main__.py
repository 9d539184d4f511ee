"""``python -m dsm`` runs the command line."""

from dsm.cli import main

if __name__ == "__main__":
    main()
