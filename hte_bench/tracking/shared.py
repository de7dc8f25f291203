"""A job's use of the claims: its configuration's seeds, parent and aggregate; what it reads back from the
store (seed outcomes, the aggregate's fingerprint); sweeps whose lease expired."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from hte_bench.tracking.claims import CLAIMS_TAG, POLL_SECONDS, Holding, Leases, claims_tag
from hte_bench.tracking.runs import KIND

log = logging.getLogger(__name__)

AGGREGATE_TAG = "aggregate_of"


class ConfigClaims:
    """One job's claims on one configuration: its seeds, its single parent run and its aggregate.

    Without a claims database (``leases=None``) every call lets the job through, as a lone process.
    """

    def __init__(self, leases: Optional[Leases], config_hash: str, label: str):
        self.leases, self.key, self.label = leases, config_hash, label
        self.reused: list[int] = []   # seeds another process fitted while this job waited
        self._told: set = set()

    def free(self, pending: list[int], outcome: Callable[[int], Optional[str]]) -> Iterator[int]:
        """Claim the pending seeds one at a time, lazily, yielding those to fit here; a seed that turns out
        finished (or failed just now) elsewhere is dropped as reused. Seeds held by others stay pending."""
        held: dict[int, Holding] = self._held_elsewhere(pending)
        self._tell(held)
        for seed in list(pending):
            if self.leases is None:
                pending.remove(seed)
                yield seed
                continue
            got, holding = self.leases.take(self.key, str(seed))
            if not got:
                if holding is not None:
                    held[seed] = holding
                continue
            pending.remove(seed)
            if holding is not None:
                log.warning("%s: seed %d: the lease of %s expired at %s; taking it over", self.label, seed,
                            holding.holder, holding.until())
            if outcome(seed) is not None:
                self.leases.release(self.key, str(seed))
                self.reused.append(seed)
                continue
            yield seed
        self._tell(held)

    def _held_elsewhere(self, seeds: list[int]) -> dict[int, Holding]:
        if self.leases is None:
            return {}
        held = self.leases.holdings(self.key)
        return {s: h for s in seeds if (h := held.get(str(s))) is not None
                and h.holder != self.leases.holder and h.expires_at >= h.now}

    def _tell(self, held: dict[int, Holding]) -> None:
        by_holder: dict[str, list] = {}
        for seed, h in sorted(held.items()):
            if (h.holder, seed) not in self._told:  # each seed once per holder, not again as the holder's set shrinks
                by_holder.setdefault(h.holder, []).append((seed, h))
        for holder, items in by_holder.items():
            seeds = tuple(s for s, _ in items)
            self._told.update((holder, s) for s in seeds)
            word = "seed" if len(seeds) == 1 else "seeds"
            verb = "is" if len(seeds) == 1 else "are"
            log.info("%s: %s %s %s being fitted by %s (lease until %s); skipped here, reused when done",
                     self.label, word, ", ".join(map(str, seeds)), verb, holder, max(h.until() for _, h in items))

    def wait(self) -> None:
        """Pause before asking again for seeds other processes hold."""
        time.sleep(POLL_SECONDS)

    def still_mine(self, seed: int) -> bool:
        """Renew the seed's claim right before its run is written; False if another run took it over."""
        return self.leases is None or self.leases.renew(self.key, str(seed))

    def done(self, seed: int) -> None:
        """The seed's run is written: let others see it as finished."""
        if self.leases is not None:
            self.leases.release(self.key, str(seed))

    def held_elsewhere(self, seed: int) -> bool:
        """Whether another process holds a live claim on the seed (its run may be RUNNING while written)."""
        return bool(self._held_elsewhere([seed]))

    @contextmanager
    def exclusive(self, part: str):
        """Hold (config, part) for a block, waiting while another process holds it."""
        if self.leases is None:
            yield
        else:
            with self.leases.hold(self.key, part):
                yield

    def __enter__(self) -> "ConfigClaims":
        return self

    def __exit__(self, *exc) -> None:
        """Give up whatever this job still holds on the configuration (bad input, interruption, the end)."""
        if self.leases is not None:
            self.leases.release(self.key)


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


def finished_seeds(tracker, parent_id: str, seeds: list[int], claims: ConfigClaims) -> dict[int, dict[str, float]]:
    """Metrics of the seeds FINISHED under the parent, once its seed runs whose writer is gone are closed KILLED."""
    close_abandoned(tracker, parent_id, claims)
    # A run still RUNNING now is being written by a live claim holder: resume_state leaves it alone.
    return tracker.resume_state(parent_id, seeds)


def close_abandoned(tracker, parent_id: str, claims: ConfigClaims) -> None:
    """Close KILLED the parent's seed runs left RUNNING by a process that died (no live claim on the seed)."""
    for run in tracker.search(f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"):
        if claims.held_elsewhere(int(run.data.tags.get("seed", -1))):
            continue
        # The status must be read after the claims: a writer releases its claim just after its run turned
        # FINISHED, so RUNNING as searched above may be stale. Closing on it overwrote a finished run with
        # KILLED, and the seed, now looking undone, was fitted a second time.
        if tracker.client.get_run(run.info.run_id).info.status == "RUNNING":
            tracker.client.set_terminated(run.info.run_id, "KILLED")


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

    Works across hosts: a live sweep anywhere renews its lease; a SIGKILLed one stops. Only sweeps whose lease
    lives in this claims database are judged: one run without claims, or against another claims database (a
    second machine's own), has no lease here although it may be alive.
    """
    if leases is None or tracker.client.get_experiment_by_name(tracker.experiment) is None:
        return
    mine = claims_tag(leases)
    for run in tracker.search(f"tags.`{KIND}` = 'sweep' and attributes.status = 'RUNNING'"):
        if run.data.tags.get(CLAIMS_TAG, mine) != mine:  # untagged: a sweep from before the tag, judged as before
            continue
        h = leases.peek(run.info.run_id, "sweep")
        now = h.now if h is not None else time.time()
        if (h is None and run.info.start_time / 1000 < now - leases.lease) or (h is not None and h.expires_at < now):
            log.info("sweep run %s: lease expired (%s); marking it KILLED", run.info.run_id,
                     f"holder {h.holder}, at {h.until()}" if h else "no lease")
            tracker.end(run.info.run_id, "KILLED")
            if h is not None:
                leases.drop_expired(run.info.run_id, "sweep")
