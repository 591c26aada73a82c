"""Ids drawn from a pool (engine/ids.py): the shapes OpenAI's have, never
repeated across a pool's refill, and a forked child's not its parent's."""

from __future__ import annotations

import os
import re
import string

from twisted.trial.unittest import SynchronousTestCase

from mockai_tw.engine import ids

_ALPHABET = set(string.ascii_letters + string.digits)


class IdTests(SynchronousTestCase):
    def test_shapes_across_many_refills(self) -> None:
        request_ids = [ids.request_id() for _ in range(1000)]
        for rid in request_ids:
            self.assertRegex(rid, r"\Areq_[0-9a-f]{32}\Z")
        self.assertEqual(len(set(request_ids)), len(request_ids))
        made = [ids.new_id("chatcmpl-") for _ in range(1000)]
        for made_id in made:
            self.assertTrue(made_id.startswith("chatcmpl-"))
            self.assertEqual(len(made_id), len("chatcmpl-") + 29)
            self.assertLessEqual(set(made_id[9:]), _ALPHABET)
        self.assertEqual(len(set(made)), len(made))
        # A length longer than the pool still comes whole.
        self.assertEqual(len(ids.new_id("x", 5000)), 5001)

    def test_a_pool_hands_out_every_character_once(self) -> None:
        ids._fresh()
        first = ids.new_id("", 10)
        self.assertEqual(ids._CHARS.text[:10], first)
        second = ids.new_id("", 10)
        self.assertEqual(ids._CHARS.text[10:20], second)

    def test_a_forked_child_draws_its_own(self) -> None:
        if not hasattr(os, "fork"):
            raise self.skipTest("no fork here")
        ids.request_id()  # the parent's pool holds ids not handed out yet
        ahead = ids._HEX.text[ids._HEX.at : ids._HEX.at + 32]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.write(write, ids.request_id().encode())
            finally:
                os._exit(0)
        os.close(write)
        try:
            child = os.read(read, 100).decode()
        finally:
            os.close(read)
            os.waitpid(pid, 0)
        self.assertTrue(re.fullmatch(r"req_[0-9a-f]{32}", child), child)
        self.assertNotEqual(child, "req_" + ahead)
        self.assertEqual(ids.request_id(), "req_" + ahead)
