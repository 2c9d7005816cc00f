"""Data arrival as an Airflow event: a trigger the triggerer runs to watch the landing prefix.

It lists committed batches (their ``_BATCH.json`` markers) every ``poll_seconds`` and fires
once for each set of batches that has not started a run yet and that a run starting now trains
on, then records them in ``_ANNOUNCED.json`` beside the batches (by compare-and-set), so the same
data never triggers twice, even after the triggerer restarts. The run the event starts ends its
data at its run-after time, after the batches' commit, so it trains on them. The recording
happens after the event is handed to Airflow: a crash in between repeats a run (harmless, the
gate decides) rather than losing the data's run; a failed recording is retried before the next
look, never by announcing again. Refused markers are logged, once each, and never announced.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseEventTrigger, TriggerEvent


class NewBatchTrigger(BaseEventTrigger):
    def __init__(self, incoming_uri: str, poll_seconds: float = 60.0):
        super().__init__()
        self.incoming_uri = incoming_uri
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return "numtaflow.triggers.NewBatchTrigger", {"incoming_uri": self.incoming_uri,
                                                      "poll_seconds": self.poll_seconds}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from . import incoming
        from .config import Settings
        from .storage import Storage

        storage, unrecorded, warned = Storage(Settings.from_env()), [], set()
        while True:
            batches = []
            try:
                if unrecorded:  # announced, not yet in the ledger
                    await asyncio.to_thread(incoming.mark_announced, storage, self.incoming_uri, unrecorded)
                    unrecorded = []
                batches, refused = await asyncio.to_thread(incoming.unannounced_batches, storage, self.incoming_uri)
                for item in (r for r in refused if r.marker not in warned):
                    self.log.warning("refused %s: %s", item.marker, item.reason)
                    warned.add(item.marker)
            except Exception as error:  # S3 down for a moment: keep watching, say why
                self.log.warning("cannot list or record %s (%s); retrying in %s s", self.incoming_uri, error,
                                 self.poll_seconds)
            if batches:
                self.log.info("new batches under %s: %s", self.incoming_uri, ", ".join(b.uri for b in batches))
                yield TriggerEvent({"batches": [b.uri for b in batches]})
                unrecorded = batches
                continue  # record them at once
            await asyncio.sleep(self.poll_seconds)
