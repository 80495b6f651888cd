"""Parsing: framed lines -> rows of the one schema (docs/contract.md §1-3).

:class:`Parser` takes the :class:`~hal_logging.pipeline.model.Line` s of one source
and returns :class:`~hal_logging.pipeline.model.Record` s whose rows are complete
(13 columns, Level in LEVELS, every field within 64 KB) and attributed (the trust
rule applied). It never raises on input: every line becomes part of a row
(blank lines excepted, below).

What each line is, in order (``Properties.hal.format``):

========================  ==========================================================
``wire``                  a line from ``configure()`` (:mod:`.wire`), the fast path
``json``, ``json:<lib>``  another logger's JSON object (:mod:`.foreign_json`)
``traceback``             a raw Python traceback, with its logging header (:mod:`.traceback`)
``text``, ``text:logging``  anything else (:mod:`.text`), escapes removed (:mod:`.terminal`)
========================  ==========================================================

Docker's formats (:mod:`.docker`) are unwrapped first and prefix the format:
``docker-json+wire``, ``docker-timestamps+text``... ``input_format`` chooses:
``auto`` (recognise per line), ``docker-json``, ``docker-timestamps`` or ``raw``.

``Properties.hal`` always holds ``stream``, ``record_id`` (:func:`record_id` of the
source, stream and start offset: the same bytes give the same id in every run),
``format`` and ``offset`` (the record's first source byte; ``Record.start``); and when
relevant ``claimed`` (trust rule, :mod:`.trust`), ``original_length`` (64 KB cuts,
:mod:`.limits`; ``Message`` is the real line length when the framer cut the line),
``original_level``, ``original_time``, ``problems`` (a wire line that broke its
promise), ``wire_version`` (a marker other than 1), ``part`` (a traceback longer
than the group caps, split over several rows). A logger name read from a text
layout (``ERROR:agent.tools:...``) goes to ``Properties.logger``; LoggerName stays
``docker.stdout``/``docker.stderr``/``docker``.

Blank lines (nothing visible once escapes are removed) make no row: their bytes
are folded into the span of the next record (its ``start``), and
:attr:`Parser.held_start` covers them meanwhile, so offsets stay contiguous.

Resending (``resend=True``, ``hal-logging-forward --resend FILE``): FILE was
written by hal-logging itself (the uploader's dead-letter file, the handler's
spill file, wrap mode's ``hal-forward-undelivered-*.jsonl``), so a wire line
that carries a valid ``Properties.hal.record_id`` (:data:`RESEND_ID`) keeps
that id, its context columns and its ``Properties.hal`` as written, instead of
the trust rule: a row that was both delivered (outcome unknown) and kept can
then be de-duplicated. ``hal.dead_letter`` (the service's earlier answer) is
dropped from the resent row and counted (:attr:`Parser.dead_letters`). Other
lines are treated as usual. Never automatic: a container could forge record
ids to make the workspace drop real rows.

Multi-line groups (a traceback, or an ERROR line that may be its header) are held
per stream until a line that does not belong arrives, :meth:`Parser.poll` finds them
older than ``multiline_timeout`` (since their last line), or :meth:`Parser.finish`.
:attr:`Parser.held_start` tells the checkpoint how far it may go meanwhile.

The rooms: :mod:`.parser` (the :class:`Parser` and its routing), :mod:`.fastpath`
(the wire fast path and the batch loop over a chunk), :mod:`.held` (multi-line
groups), :mod:`.records` (rows finished into records), :mod:`.ids` (record ids);
each kind of line has its own module (:mod:`.wire`, :mod:`.foreign_json`,
:mod:`.text`, :mod:`.traceback`, :mod:`.docker`). This module is only the face.
"""

from __future__ import annotations

from hal_logging.pipeline.parsing.ids import RESEND_ID, record_id
from hal_logging.pipeline.parsing.parser import INPUT_FORMATS, Parser

__all__ = ["INPUT_FORMATS", "RESEND_ID", "Parser", "record_id"]
