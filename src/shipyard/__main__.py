"""``python -m shipyard`` = the ``shipyard`` command."""

from shipyard.cli import main

main()
