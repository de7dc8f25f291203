"""What concurrent jobs read back from the store: seed outcomes, the aggregate's fingerprint, expired sweeps."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Optional

from hte_bench.tracking.claims import Leases
from hte_bench.tracking.runs import KIND

log = logging.getLogger(__name__)

AGGREGATE_TAG = "aggregate_of"


def seed_outcome(tracker, parent_id: Optional[str], seed: int, since_ms: int) -> Optional[str]:
    """FINISHED if the seed has a finished run under the parent, FAILED if one failed since ``since_ms``.

    The caller holds the seed's claim, so a run of it still RUNNING lost its writer: it is closed KILLED.
    """
    if parent_id is None:
        return None
    runs = tracker.search(f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.seed = '{seed}'")
    for run in runs:
        if run.info.status == "RUNNING":
            tracker.end(run.info.run_id, "KILLED")
    if any(r.info.status == "FINISHED" for r in runs):
        return "FINISHED"
    return "FAILED" if any(r.info.status == "FAILED" and r.info.start_time >= since_ms for r in runs) else None


def failed_seeds(tracker, parent_id: str, seeds: list[int]) -> list[int]:
    """Seeds whose runs under the parent failed and never finished."""
    status: dict[int, set] = {}
    for run in tracker.search(f"tags.`mlflow.parentRunId` = '{parent_id}'"):
        status.setdefault(int(run.data.tags.get("seed", -1)), set()).add(run.info.status)
    return [s for s in seeds if "FAILED" in status.get(s, ()) and "FINISHED" not in status[s]]


def digest(rows: list[dict], failed: list[int]) -> str:
    """A fingerprint of the seed results an aggregate is computed from."""
    blob = json.dumps([rows, failed], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def aggregate_is_current(tracker, parent_id: str, fingerprint: str) -> bool:
    """Whether the parent is FINISHED with an aggregate of exactly these seed results (written by another job)."""
    run = tracker.client.get_run(parent_id)
    return run.info.status == "FINISHED" and run.data.tags.get(AGGREGATE_TAG) == fingerprint


def mark_aggregate(tracker, parent_id: str, fingerprint: str) -> None:
    """Record which seed results the parent's aggregate is about to be computed from."""
    tracker.client.set_tag(parent_id, AGGREGATE_TAG, fingerprint)


def close_expired_sweeps(tracker, leases: Optional[Leases]) -> None:
    """Mark KILLED the RUNNING sweep runs whose lease expired (or which never had one and are older than a lease).

    Works across hosts: a live sweep anywhere renews its lease; a SIGKILLed one stops.
    """
    if leases is None or tracker.client.get_experiment_by_name(tracker.experiment) is None:
        return
    for run in tracker.search(f"tags.`{KIND}` = 'sweep' and attributes.status = 'RUNNING'"):
        h = leases.peek(run.info.run_id, "sweep")
        now = h.now if h is not None else time.time()
        if (h is None and run.info.start_time / 1000 < now - leases.lease) or (h is not None and h.expires_at < now):
            log.info("sweep run %s: lease expired (%s); marking it KILLED", run.info.run_id,
                     f"holder {h.holder}, at {h.until()}" if h else "no lease")
            tracker.end(run.info.run_id, "KILLED")
            if h is not None:
                leases.drop_expired(run.info.run_id, "sweep")
