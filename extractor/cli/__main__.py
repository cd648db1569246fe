"""`python -m extractor.cli`: the same entry point as the installed `extractor` command."""
from extractor.cli.app import main

main()
