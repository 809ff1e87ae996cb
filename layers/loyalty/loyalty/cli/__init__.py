"""The `loyalty` command: a shop developer's tools against a running API (local or deployed). Not used by the
Lambda functions.

    loyalty send-order --shop SHOP --secret whsec_... --member m1 --amount 99.00
    loyalty import members.csv --shop SHOP --key KEY

`--url` (or LOYALTY_URL) says where the API is; default http://127.0.0.1:3000, where `make run` serves it.
"""

import argparse
import sys

from loyalty.cli import importer as importer
from loyalty.cli import orders as orders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loyalty", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    orders.add_command(commands)
    importer.add_command(commands)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
