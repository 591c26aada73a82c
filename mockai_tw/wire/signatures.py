"""Opaque thinking signatures, for the providers that hand them out.

Anthropic seals a thinking block with a ``signature``; Gemini puts a
``thoughtSignature`` on the first function call of a turn it thought about.
Clients only carry them back, so they need to look like the real ones (long
base64) and stay the same for the same reply.
"""

from __future__ import annotations

import base64
import hashlib

from mockai_tw.engine.plan import ChatPlan, ChoicePlan


def signature(plan: ChatPlan, choice: ChoicePlan) -> str:
    """Base64 as long as the real ones, the same for the same plan and reasoning."""
    seed = f"{plan.id}\0{choice.reasoning_text}".encode()
    digest = b"".join(
        hashlib.blake2b(seed, digest_size=64, person=b"sig%d" % i).digest()
        for i in range(4)
    )
    return base64.b64encode(b"\x12\x08" + digest).decode()
