"""What every benchmark script ends with: its rows as a table on the terminal, and the same
rows (with the run's settings) as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(title: str, rows: list[dict[str, Any]], out: Path, **meta: Any) -> None:
    """Print `rows` (one column per key of the first row) under `title`; write
    `{**meta, "rows": rows}` to `out`."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    Console().print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2))
    print(f"wrote {out}")
