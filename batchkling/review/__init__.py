"""Reviewing takes: picks, rejects and notes, the inbox that carries them into the ledger."""

from __future__ import annotations

from batchkling.review.marks import MARK_EVENTS, Marks, TakesMode, choose, marks_of, shot_of

__all__ = ["MARK_EVENTS", "Marks", "TakesMode", "choose", "marks_of", "shot_of"]
