"""Write tests/fixtures/journal-v1.db: a sales run journaled by this version (schema 1).

Run once per schema version; the fixtures are then kept forever so that later versions are
tested against journals written by earlier ones.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hubspoke import SCHEMA_VERSION, Foreman, RunState, SQLiteStore
from hubspoke.examples.sales import DEMO_INPUT, workflow

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def main() -> None:
    db = OUT / f"journal-v{SCHEMA_VERSION}.db"
    db.unlink(missing_ok=True)
    store = SQLiteStore(db)
    result = asyncio.run(Foreman(workflow, store).run(DEMO_INPUT, run_id="run_fixture"))
    state = RunState.fold(result.run_id, store.events(result.run_id))
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store._db.execute("PRAGMA journal_mode=DELETE")
    store.close()
    summary = OUT / f"journal-v{SCHEMA_VERSION}.summary.json"
    summary.write_text(json.dumps(state.summary(), indent=1) + "\n")
    print(f"wrote {db} and {summary}")


if __name__ == "__main__":
    main()
