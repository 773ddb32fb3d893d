"""Where the service keeps its state: one data directory with the SQLite database and the artifact store."""

import os
from pathlib import Path

DEFAULT_DATA = Path(os.environ.get("TINYMLAAS_DATA", Path.home() / ".tinymlaas"))


def add_data_argument(parser):
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="service data directory (database + artifacts); default $TINYMLAAS_DATA or ~/.tinymlaas")
    parser.add_argument("--db", default=None,
                        help="database URL or SQLite path (default DATA/tinymlaas.db); postgresql://... also works")


def db_url(args):
    return args.db or str(Path(args.data) / "tinymlaas.db")
