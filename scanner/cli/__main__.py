"""``python -m scanner.cli``: the scanner command."""

from . import main

main()
