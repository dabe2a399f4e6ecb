"""Opportunistic micro-batching: single-lead requests that arrive together are scored as one matrix.

Scoring one lead is mostly fixed per-call cost, so scoring the leads of several concurrent requests in
one call costs little more than scoring one. Nothing waits for a batch to fill: a request joins the
leads already queued in the same turn of the event loop, and the batch is scored on the loop's next turn.

That next turn is a delay for nothing when no other request comes. So after ``LONE_BATCHES`` batches
of one in a row, the batcher scores each request at once, within its own turn, and goes back to
batching as soon as two requests meet in one turn.

Each request gets exactly the answer it would get alone; leads are grouped per (model version,
explain), so a request is always scored by the version it holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from leadscore.features.schema import LeadRecord
from leadscore.serving.scoring import score_leads
from leadscore.serving.state import LoadedModel

Answer = tuple[dict[str, Any], dict[str, Any]]  # the answer, and its score-log row


LONE_BATCHES = 16  # batches of one in a row after which requests are scored at once


class MicroBatcher:
    """Queue single leads; score each turn's queue per (model version, explain) with :func:`score_leads`.

    ``batching`` says how the next request is taken: queued for the turn's batch (the start), or scored
    at once while requests come one per turn.
    """

    def __init__(self, hash_lead: Callable[[str], str], on_batch: Callable[[int], None] = lambda size: None) -> None:
        self.hash_lead, self.on_batch = hash_lead, on_batch
        self._queue: list[tuple[LoadedModel, LeadRecord, str, bool, asyncio.Future[Answer]]] = []
        self.batching = True
        self._lone = 0  # batches of one in a row
        self._scored_this_turn = False

    async def score(self, model: LoadedModel, lead: LeadRecord, request_id: str, explain: bool) -> Answer:
        loop = asyncio.get_running_loop()
        if not self.batching:
            if not self._scored_this_turn:
                self._scored_this_turn = True
                loop.call_soon(self._turn_ended)
                answers, rows = score_leads(model, [lead], [request_id], explain, self.hash_lead)
                self.on_batch(1)
                return answers[0], rows[0]
            self.batching, self._lone = True, 0  # a second request in one turn: they come together now
        future: asyncio.Future[Answer] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._run)
        self._queue.append((model, lead, request_id, explain, future))
        return await future

    def _turn_ended(self) -> None:
        self._scored_this_turn = False

    def _run(self) -> None:
        queue, self._queue = self._queue, []
        self._lone = self._lone + 1 if len(queue) == 1 else 0
        self.batching = self._lone < LONE_BATCHES
        groups: dict[tuple[int, bool], list[tuple[LoadedModel, LeadRecord, str, bool, asyncio.Future[Answer]]]] = {}
        for item in queue:
            groups.setdefault((id(item[0]), item[3]), []).append(item)
        for items in groups.values():
            model, explain = items[0][0], items[0][3]
            try:
                answers, rows = score_leads(
                    model, [i[1] for i in items], [i[2] for i in items], explain, self.hash_lead
                )
            except Exception as exc:  # noqa: BLE001 - each request fails as it would have alone
                for *_, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.on_batch(len(items))
            for (*_, future), answer, row in zip(items, answers, rows, strict=True):
                if not future.done():  # a caller that went away
                    future.set_result((answer, row))
