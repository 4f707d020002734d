"""`python -m cubeinstall` runs the command line."""

from cubeinstall.cli import main

main()
