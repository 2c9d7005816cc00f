"""Data arrival as an Airflow event: a trigger the triggerer runs to watch the landing prefix.

It lists committed batches (their ``_BATCH.json`` markers) every ``poll_seconds`` and fires
once for each set of batches that has not started a run yet, then records them in
``_ANNOUNCED.json`` beside the batches, so the same data never triggers twice, even after the
triggerer restarts. The recording happens after the event is handed to Airflow: a crash in
between repeats a run (harmless, the gate decides) rather than losing the data's run.
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
        from .config import Settings
        from .incoming import mark_announced, unannounced_batches
        from .storage import Storage

        storage = Storage(Settings.from_env())
        while True:
            try:
                batches = await asyncio.to_thread(unannounced_batches, storage, self.incoming_uri)
            except Exception as error:  # S3 down for a moment: keep watching, say why
                self.log.warning("cannot list %s (%s); retrying in %s s", self.incoming_uri, error, self.poll_seconds)
                batches = []
            if batches:
                self.log.info("new batches under %s: %s", self.incoming_uri, ", ".join(b.uri for b in batches))
                yield TriggerEvent({"batches": [b.uri for b in batches]})
                await asyncio.to_thread(mark_announced, storage, self.incoming_uri, batches)
            await asyncio.sleep(self.poll_seconds)
