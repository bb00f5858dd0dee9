#!/usr/bin/env python3
"""Writes aiconfigurator's perf tables (Parquet, as the repository ships them since mid-2026)
back as the comma-separated `*_perf.txt` files its collector writes (`collector/helper.py
log_perf`: `framework,version,device,op_name,kernel_source,<op columns>,latency`), which is
the format `llm-emu --profile DIR` reads.

usage: aiconfigurator-parquet-to-txt.py OUT_DIR TABLE.parquet [TABLE.parquet ...]
Needs pyarrow (`pip install pyarrow`).
"""
import csv
import os
import sys

import pyarrow.parquet as pq


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for path in sys.argv[2:]:
        table = pq.read_table(path)
        name = os.path.basename(path).removesuffix(".parquet") + ".txt"
        with open(os.path.join(out, name), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(table.schema.names)
            for row in table.to_pylist():
                w.writerow(["" if row[c] is None else row[c] for c in table.schema.names])
        print(f"{name}: {table.num_rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
