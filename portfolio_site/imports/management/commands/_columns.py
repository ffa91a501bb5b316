"""What `import` and `export` share: their --help ends with every kind's columns, laid out as written.

(Django does not take modules whose name starts with an underscore for commands.)
"""

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from portfolio_site.imports.formats import columns_reference


class ColumnsHelpCommand(BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = columns_reference()
        return parser
