"""``python -m veritee``."""

from veritee.cli import main

main()
