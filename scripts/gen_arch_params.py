"""Regenerate ``src/paragonsr/assets/arch_params.json`` (parameter counts for ``paragonsr archs``).

python scripts/gen_arch_params.py            # write the table
python scripts/gen_arch_params.py --check    # exit 1 when the table is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paragonsr.archs import ARCH_REGISTRY
from paragonsr.archs.param_table import TABLE, build_table, table_is_fresh
from paragonsr.utils.atomic import atomic_write_text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    if args.check:
        ok = table_is_fresh()
        print(f"{TABLE}: {'up to date' if ok else 'stale, rerun scripts/gen_arch_params.py'}")
        return 0 if ok else 1
    table = build_table(ARCH_REGISTRY.names())
    atomic_write_text(TABLE, json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {TABLE} ({len(table['archs'])} archs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
