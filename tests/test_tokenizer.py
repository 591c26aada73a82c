"""The one tokenizer: exact encodings when installed, an approximation otherwise."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase, TestCase

from mockai_tw.engine import tokenizer
from mockai_tw.engine.tokenizer import Tokenizer, approximate_pieces, encoding_name

SAMPLES = [
    "Hello, world! How are you doing today?",
    "你好，有什么可以帮助你的吗？",
    "internationalization is 12345 tokens\n\ndef f(x):\n    return x",
    "I'm sure they'll've   spaces\t\tand tabs",
    "emoji 🎉 and accents: café, naïve",
]


class TokenizerTests(SynchronousTestCase):
    def test_encoding_per_model(self) -> None:
        for model in (
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1-nano",
            "o3-mini",
            "ft:gpt-4o-mini:org::x",
        ):
            self.assertEqual(encoding_name(model), "o200k_base", model)
        for model in (
            "gpt-4",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
            "davinci-002",
        ):
            self.assertEqual(encoding_name(model), "cl100k_base", model)

    def test_pieces_join_back(self) -> None:
        for model in ("gpt-4o", "gpt-3.5-turbo"):
            for text in SAMPLES:
                self.assertEqual("".join(tokenizer.pieces(text, model)), text)
                self.assertEqual("".join(approximate_pieces(text)), text)

    def test_exact_counts_when_installed(self) -> None:
        tok = tokenizer.for_model("gpt-4o")
        if not tok.exact:
            raise self.skipTest("bpe-openai is not installed")
        # Known o200k_base / cl100k_base counts.
        self.assertEqual(tok.count("Hello, world! How are you doing today?"), 10)
        self.assertEqual(tok.count("你好，有什么可以帮助你的吗？"), 8)
        self.assertEqual(
            tokenizer.count("你好，有什么可以帮助你的吗？", "gpt-3.5-turbo"), 17
        )
        # A token ending inside a UTF-8 sequence merges with the next.
        self.assertTrue(all(p.isprintable() for p in tokenizer.pieces("什么", "gpt-4")))

    def test_approximation(self) -> None:
        tok = Tokenizer("approximate")
        self.assertFalse(tok.exact)
        self.assertEqual(tok.count(""), 0)
        self.assertEqual(tok.count("Hello, world!"), 4)
        self.assertEqual(tok.count("你好"), 2)
        self.assertEqual(
            tok.pieces("internationalization"), ["inter", "natio", "naliz", "ation"]
        )

    def test_message_accounting(self) -> None:
        one = [{"role": "user", "content": "hi"}]
        named = [{"role": "user", "content": "hi", "name": "bob"}]
        base = tokenizer.count_messages(one, model="gpt-4o")
        self.assertEqual(base, 3 + 3 + tokenizer.count("user") + tokenizer.count("hi"))
        self.assertEqual(
            tokenizer.count_messages(named, model="gpt-4o"),
            base + 1 + tokenizer.count("bob"),
        )
        tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
        self.assertGreater(tokenizer.count_messages(one, tools, "gpt-4o"), base + 3)
        image = [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "x"}}],
            }
        ]
        self.assertEqual(
            tokenizer.count_messages(image, model="gpt-4o"), 3 + 3 + 1 + 85
        )


class WarmTests(TestCase):
    async def test_the_service_loads_its_encodings_before_it_listens(self) -> None:
        from tests.support import start

        if tokenizer._encoding("o200k_base") is None:
            raise self.skipTest("bpe-openai is not installed")
        tokenizer.for_model.cache_clear()
        tokenizer._encoding.cache_clear()
        self.addCleanup(tokenizer.for_model.cache_clear)
        await start(self, {"models": ["gpt-4o-mini", "gpt-4"]})
        # Both encodings the two models count with, before any request.
        self.assertEqual(tokenizer._encoding.cache_info().currsize, 2)
        self.assertEqual(tokenizer.for_model.cache_info().currsize, 2)
