"""Run a workflow in this process until it ends (or is killed): used by crash tests.

Usage: python -m tests.workflows.run DB REF RUN_ID INPUT_JSON [LATENCY_SECONDS]
"""

from __future__ import annotations

import asyncio
import json
import sys

from hubspoke import Foreman, SQLiteStore
from hubspoke.loader import load_workflow


def main() -> None:
    db, ref, run_id, payload = sys.argv[1:5]
    latency = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    foreman = Foreman(load_workflow(ref), SQLiteStore(db), offline_latency=latency)
    result = asyncio.run(
        foreman.run(json.loads(payload), run_id=run_id, ref=ref, options={"latency": latency})
    )
    print(result.status)


if __name__ == "__main__":
    main()
