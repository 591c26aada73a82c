"""``POST /v1/moderations``: word-list flags, deterministic scores, the schema."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import TestCase

from mockai_tw.config import (
    DEFAULT_MODERATION_WORDS,
    MODERATION_CATEGORIES,
    ConfigError,
)
from mockai_tw.config_load import load_config, parse_config
from mockai_tw.engine.moderations import classify
from mockai_tw.request.moderations import ModerationInput
from tests.openapi import ROOT, validate
from tests.support import Live, start

PATH = "/v1/moderations"
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}


async def moderate(live: Live, body: dict[str, Any]) -> dict[str, Any]:
    response, payload = await live.json("POST", PATH, body)
    assert response.code == 200, payload
    validate(payload, "CreateModerationResponse")
    assert payload["id"].startswith("modr-"), payload["id"]
    for result in payload["results"]:
        assert set(result["categories"]) == set(MODERATION_CATEGORIES)
        for category, flagged in result["categories"].items():
            score = result["category_scores"][category]
            assert 0.0 <= score <= 1.0, (category, score)
            assert flagged == (score >= 0.5), (category, score)
        assert result["flagged"] == any(result["categories"].values())
    return payload


class ModerationTests(TestCase):
    async def test_flagged_and_not(self) -> None:
        live = await start(self)
        body = await moderate(live, {"input": "I want to kill them."})
        self.assertEqual(body["model"], "omni-moderation-latest")
        [result] = body["results"]
        self.assertTrue(result["flagged"])
        self.assertTrue(result["categories"]["violence"])
        self.assertFalse(result["categories"]["sexual"])
        self.assertGreaterEqual(result["category_scores"]["violence"], 0.5)
        self.assertLess(result["category_scores"]["hate"], 0.01)
        self.assertEqual(
            result["category_applied_input_types"],
            {c: ["text"] for c in MODERATION_CATEGORIES},
        )
        body = await moderate(live, {"input": "What a lovely day for a picnic."})
        [result] = body["results"]
        self.assertFalse(result["flagged"])
        self.assertFalse(any(result["categories"].values()))

    async def test_whole_words_any_case(self) -> None:
        live = await start(self)
        for text, flagged in (
            ("KILL the process", True),
            ("Kill!", True),
            ("she has great skill", False),
            ("killer whales", False),
        ):
            body = await moderate(live, {"input": text})
            self.assertEqual(body["results"][0]["categories"]["violence"], flagged)

    async def test_subcategory_flags_its_parent(self) -> None:
        live = await start(self)
        body = await moderate(live, {"input": "Some days I want to die."})
        categories = body["results"][0]["categories"]
        self.assertTrue(categories["self-harm/intent"])
        self.assertTrue(categories["self-harm"])
        self.assertFalse(categories["self-harm/instructions"])

    async def test_list_of_strings_one_result_each(self) -> None:
        live = await start(self)
        body = await moderate(
            live,
            {"model": "text-moderation-latest", "input": ["hello", "you idiot", ""]},
        )
        self.assertEqual(body["model"], "text-moderation-latest")
        self.assertEqual([r["flagged"] for r in body["results"]], [False, True, False])
        self.assertTrue(body["results"][1]["categories"]["harassment"])

    async def test_multimodal_parts_one_result(self) -> None:
        live = await start(self)
        body = await moderate(
            live,
            {"input": [{"type": "text", "text": "a gore scene"}, IMAGE]},
        )
        [result] = body["results"]
        self.assertTrue(result["categories"]["violence/graphic"])
        self.assertTrue(result["categories"]["violence"])
        applied = result["category_applied_input_types"]
        self.assertEqual(applied["violence"], ["text", "image"])
        self.assertEqual(applied["sexual"], ["text", "image"])
        self.assertEqual(applied["hate"], ["text"])
        body = await moderate(live, {"input": [IMAGE]})
        applied = body["results"][0]["category_applied_input_types"]
        self.assertEqual(applied["violence"], ["image"])
        self.assertEqual(applied["harassment"], [])
        self.assertFalse(body["results"][0]["flagged"])

    async def test_scores_are_deterministic(self) -> None:
        live = await start(self)
        first = await moderate(live, {"input": "stab stab"})
        second = await moderate(live, {"input": "stab stab"})
        self.assertEqual(first["results"], second["results"])
        self.assertNotEqual(first["id"], second["id"])
        once = await moderate(live, {"input": "stab"})
        # More hits, a higher score.
        self.assertGreaterEqual(
            first["results"][0]["category_scores"]["violence"],
            once["results"][0]["category_scores"]["violence"],
        )

    async def test_configured_words_and_threshold(self) -> None:
        live = await start(
            self,
            {
                "moderation": {
                    "categories": {
                        "hate": ["Bananas", "pineapple pizza"],
                        "violence": [],
                    },
                    "threshold": 0.8,
                }
            },
        )
        response, body = await live.json(
            "POST", PATH, {"input": "I KILL bananas and pineapple pizza"}
        )
        self.assertEqual(response.code, 200)
        validate(body, "CreateModerationResponse")
        [result] = body["results"]
        self.assertTrue(result["categories"]["hate"])
        self.assertGreaterEqual(result["category_scores"]["hate"], 0.8)
        self.assertFalse(result["categories"]["violence"])
        self.assertLess(result["category_scores"]["violence"], 0.8)
        # Categories not configured keep their defaults.
        response, body = await live.json("POST", PATH, {"input": "counterfeit bills"})
        self.assertTrue(body["results"][0]["categories"]["illicit"])

    async def test_sdk(self) -> None:
        live = await start(self)
        client = live.sdk()
        flagged = await live.in_thread(
            lambda: client.moderations.create(input="I will murder you")
        )
        self.assertTrue(flagged.id.startswith("modr-"))
        [result] = flagged.results
        self.assertTrue(result.flagged)
        self.assertTrue(result.categories.violence)
        self.assertGreaterEqual(result.category_scores.violence, 0.5)
        clean = await live.in_thread(
            lambda: client.moderations.create(
                model="omni-moderation-latest",
                input=[{"type": "text", "text": "Nice weather"}, IMAGE],
            )
        )
        self.assertEqual(clean.model, "omni-moderation-latest")
        self.assertFalse(clean.results[0].flagged)
        self.assertEqual(
            clean.results[0].category_applied_input_types.violence, ["text", "image"]
        )


class ErrorTests(TestCase):
    async def expect(
        self, live: Live, body: Any, param: str | None, code: str | None = None
    ) -> None:
        response, payload = await live.json("POST", PATH, body)
        self.assertEqual(response.code, 400, (body, payload))
        validate(payload, "ErrorResponse")
        error = payload["error"]
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertEqual((error["param"], error["code"]), (param, code), body)

    async def test_bad_inputs_name_the_param(self) -> None:
        live = await start(self)
        await self.expect(live, {}, "input", "missing_required_parameter")
        await self.expect(live, {"input": 5}, "input", "invalid_type")
        await self.expect(live, {"input": []}, "input", "empty_array")
        await self.expect(live, {"input": ["a", 1]}, "input[1]", "invalid_type")
        await self.expect(
            live, {"input": [{"type": "audio"}]}, "input[0].type", "invalid_value"
        )
        await self.expect(
            live,
            {"input": [{"text": "x"}]},
            "input[0].type",
            "missing_required_parameter",
        )
        await self.expect(
            live,
            {"input": [{"type": "text"}]},
            "input[0].text",
            "missing_required_parameter",
        )
        await self.expect(
            live,
            {"input": [{"type": "image_url"}]},
            "input[0].image_url",
            "missing_required_parameter",
        )
        await self.expect(
            live,
            {"input": [{"type": "image_url", "image_url": {}}]},
            "input[0].image_url.url",
            "missing_required_parameter",
        )
        await self.expect(live, {"input": [IMAGE, "x"]}, "input[1]", "invalid_type")
        await self.expect(
            live, {"model": "text-moderation-latest", "input": [IMAGE]}, "input"
        )
        await self.expect(live, {"model": "", "input": "x"}, "model")
        await self.expect(live, {"model": 1, "input": "x"}, "model", "invalid_type")


class ConfigTests(TestCase):
    def error(self, raw: dict[str, Any], environ: dict[str, str] | None = None) -> str:
        with self.assertRaises(ConfigError) as caught:
            parse_config({"access_token": "t", **raw}, environ or {})
        return str(caught.exception)

    def test_defaults_cover_every_category(self) -> None:
        config = parse_config({"access_token": "t"}, {})
        self.assertEqual(set(config.moderation.categories), set(MODERATION_CATEGORIES))
        self.assertEqual(config.moderation.threshold, 0.5)
        self.assertEqual(
            dict(config.moderation.categories), dict(DEFAULT_MODERATION_WORDS)
        )
        hash(config)  # frozen configs stay hashable

    def test_bundled_config_spells_out_the_defaults(self) -> None:
        config = load_config(str(ROOT / "config.yaml"), {})
        self.assertEqual(
            dict(config.moderation.categories), dict(DEFAULT_MODERATION_WORDS)
        )
        self.assertEqual(config.moderation.threshold, 0.5)
        self.assertFalse(config.strict_models)

    def test_errors_name_the_key_path(self) -> None:
        for raw, expected in (
            (
                {"moderation": {"categories": {"gore": ["x"]}}},
                "moderation.categories.gore: unknown key (known keys: harassment,",
            ),
            (
                {"moderation": {"categories": {"violence": [""]}}},
                "moderation.categories.violence[0]: must not be empty",
            ),
            (
                {"moderation": {"categories": {"violence": [1]}}},
                "moderation.categories.violence[0]: must be a string",
            ),
            (
                {"moderation": {"categories": {"violence": {"a": 1}}}},
                "moderation.categories.violence: must be a list",
            ),
            (
                {"moderation": {"categories": ["violence"]}},
                "moderation.categories: must be a mapping, got a list",
            ),
            ({"moderation": {"threshold": 0}}, "moderation.threshold: must be > 0"),
            ({"moderation": {"threshold": 1.5}}, "moderation.threshold: must be <= 1"),
            ({"moderation": {"words": []}}, "moderation.words: unknown key"),
            ({"moderation": "strict"}, "moderation: must be a mapping"),
        ):
            message = self.error(raw)
            self.assertTrue(message.startswith(expected), (message, expected))

    def test_environment(self) -> None:
        config = parse_config(
            {"access_token": "t"},
            {
                "MOCKAI_MODERATION__CATEGORIES__VIOLENCE": "zap, pow",
                "MOCKAI_MODERATION__THRESHOLD": "0.9",
            },
        )
        self.assertEqual(config.moderation.categories["violence"], ("zap", "pow"))
        self.assertEqual(config.moderation.threshold, 0.9)
        message = self.error({}, {"MOCKAI_MODERATION__CATEGORIES__GORE": "x"})
        self.assertTrue(message.startswith("moderation.categories.gore: unknown key"))

    def test_classify_unit(self) -> None:
        config = parse_config(
            {"access_token": "t", "moderation": {"threshold": 1.0}}, {}
        ).moderation
        result = classify(config, ModerationInput("kill"))
        self.assertEqual(result.category_scores["violence"], 1.0)
        self.assertTrue(result.flagged)
        result = classify(config, ModerationInput("fine"))
        self.assertFalse(result.flagged)
        self.assertLess(max(result.category_scores.values()), 0.5)
