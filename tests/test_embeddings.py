"""``POST /v1/embeddings``: shapes, vectors that behave, and OpenAI's errors."""

from __future__ import annotations

import base64
import math
from array import array
from collections.abc import Sequence
from typing import Any

from twisted.trial.unittest import TestCase

from mockai_tw.engine import embeddings as engine
from mockai_tw.engine import tokenizer
from mockai_tw.errors import ApiError
from mockai_tw.request.embeddings import parse_embeddings_request
from tests.openapi import validate
from tests.support import Live, start

PATH = "/v1/embeddings"
SMALL = "text-embedding-3-small"
CAT = "The cat sat on the mat."
CAT2 = "A cat was sitting on the mat."
OTHER = "Quarterly revenue grew across Asian markets."


def norm(v: Sequence[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True)) / (norm(a) * norm(b))


def decoded(body: dict[str, Any]) -> dict[str, Any]:
    """A base64 body with its vectors decoded, as the SDK decodes them."""
    data = []
    for item in body["data"]:
        raw = base64.b64decode(item["embedding"])
        vector = array("f")
        vector.frombytes(raw)
        data.append({**item, "embedding": vector.tolist()})
    return {**body, "data": data}


async def create(live: Live, **body: Any) -> list[list[float]]:
    """POST, check the body against the schema, return the vectors."""
    response, payload = await live.json("POST", PATH, body)
    assert response.code == 200, payload
    if body.get("encoding_format") == "base64":
        assert all(isinstance(d["embedding"], str) for d in payload["data"])
        payload = decoded(payload)
    validate(payload, "CreateEmbeddingResponse")
    assert [d["index"] for d in payload["data"]] == list(range(len(payload["data"])))
    return [d["embedding"] for d in payload["data"]]


class ShapeTests(TestCase):
    async def test_float_body(self) -> None:
        live = await start(self)
        response, body = await live.json(
            "POST", PATH, {"model": SMALL, "input": CAT, "encoding_format": "float"}
        )
        self.assertEqual(response.code, 200)
        validate(body, "CreateEmbeddingResponse")
        self.assertEqual(body["object"], "list")
        self.assertEqual(body["model"], SMALL)
        [item] = body["data"]
        self.assertEqual((item["object"], item["index"]), ("embedding", 0))
        self.assertEqual(len(item["embedding"]), 1536)
        self.assertAlmostEqual(norm(item["embedding"]), 1.0, places=5)
        tokens = tokenizer.count(CAT, SMALL)
        self.assertEqual(
            body["usage"], {"prompt_tokens": tokens, "total_tokens": tokens}
        )

    async def test_base64_is_little_endian_float32_of_the_same_vector(self) -> None:
        live = await start(self)
        [as_float] = await create(live, model=SMALL, input=CAT)
        response, body = await live.json(
            "POST", PATH, {"model": SMALL, "input": CAT, "encoding_format": "base64"}
        )
        self.assertEqual(response.code, 200)
        raw = base64.b64decode(body["data"][0]["embedding"])
        self.assertEqual(len(raw), 4 * 1536)
        self.assertEqual(decoded(body)["data"][0]["embedding"], as_float)
        validate(decoded(body), "CreateEmbeddingResponse")

    async def test_native_dimensions(self) -> None:
        live = await start(self)
        for model, size in (
            ("text-embedding-3-small", 1536),
            ("text-embedding-3-large", 3072),
            ("text-embedding-ada-002", 1536),
            ("someone-elses-model", 1536),
        ):
            [vector] = await create(live, model=model, input=CAT)
            self.assertEqual(len(vector), size, model)
            self.assertAlmostEqual(norm(vector), 1.0, places=5)

    async def test_many_inputs_and_token_arrays(self) -> None:
        live = await start(self)
        texts = [CAT, OTHER, "third"]
        vectors = await create(live, model=SMALL, input=texts)
        self.assertEqual(len(vectors), 3)
        for text, vector in zip(texts, vectors, strict=True):
            [alone] = await create(live, model=SMALL, input=text)
            self.assertEqual(vector, alone)
        _, body = await live.json("POST", PATH, {"model": SMALL, "input": texts})
        expected = sum(tokenizer.count(t, SMALL) for t in texts)
        self.assertEqual(body["usage"]["prompt_tokens"], expected)
        # One token array, and several.
        _, body = await live.json(
            "POST", PATH, {"model": SMALL, "input": [1212, 318, 257, 1332, 13]}
        )
        validate(body, "CreateEmbeddingResponse")
        self.assertEqual(len(body["data"]), 1)
        self.assertEqual(body["usage"]["prompt_tokens"], 5)
        _, body = await live.json(
            "POST", PATH, {"model": SMALL, "input": [[1, 2, 3], [4, 5]]}
        )
        validate(body, "CreateEmbeddingResponse")
        self.assertEqual(len(body["data"]), 2)
        self.assertEqual(body["usage"], {"prompt_tokens": 5, "total_tokens": 5})
        self.assertAlmostEqual(norm(body["data"][1]["embedding"]), 1.0, places=5)

    async def test_dimensions_truncate_and_renormalise(self) -> None:
        live = await start(self)
        [full] = await create(live, model="text-embedding-3-large", input=CAT)
        [short] = await create(
            live, model="text-embedding-3-large", input=CAT, dimensions=256
        )
        self.assertEqual(len(short), 256)
        self.assertAlmostEqual(norm(short), 1.0, places=5)
        scale = norm(full[:256])
        for x, y in zip(full[:256], short, strict=True):
            self.assertAlmostEqual(x / scale, y, places=6)
        [one] = await create(live, model=SMALL, input=CAT, dimensions=1)
        self.assertEqual(abs(one[0]), 1.0)
        [same] = await create(live, model=SMALL, input=CAT, dimensions=1536)
        [plain] = await create(live, model=SMALL, input=CAT)
        self.assertEqual(same, plain)


class SdkTests(TestCase):
    async def test_default_base64_decoded_by_the_sdk(self) -> None:
        live = await start(self)
        client = live.sdk()
        result = await live.in_thread(
            lambda: client.embeddings.create(model=SMALL, input=[CAT, CAT2, OTHER])
        )
        self.assertEqual(result.model, SMALL)
        self.assertEqual(result.object, "list")
        cat, cat2, other = (d.embedding for d in result.data)
        for vector in (cat, cat2, other):
            self.assertEqual(len(vector), 1536)
            self.assertAlmostEqual(norm(vector), 1.0, places=5)
        # Texts that share words are closer than texts that share none.
        self.assertGreater(cosine(cat, cat2), cosine(cat, other) + 0.2)
        self.assertGreater(cosine(cat, cat2), cosine(cat2, other) + 0.2)
        self.assertLess(abs(cosine(cat, other)), 0.2)
        assert result.usage is not None
        self.assertEqual(
            result.usage.prompt_tokens,
            sum(tokenizer.count(t, SMALL) for t in (CAT, CAT2, OTHER)),
        )
        again = await live.in_thread(
            lambda: client.embeddings.create(model=SMALL, input=CAT)
        )
        self.assertEqual(again.data[0].embedding, cat)

    async def test_float_and_dimensions(self) -> None:
        live = await start(self)
        client = live.sdk()
        as_base64 = await live.in_thread(
            lambda: client.embeddings.create(model=SMALL, input=OTHER)
        )
        as_float = await live.in_thread(
            lambda: client.embeddings.create(
                model=SMALL, input=OTHER, encoding_format="float"
            )
        )
        self.assertEqual(as_float.data[0].embedding, as_base64.data[0].embedding)
        short = await live.in_thread(
            lambda: client.embeddings.create(
                model="text-embedding-3-large", input=OTHER, dimensions=512
            )
        )
        self.assertEqual(len(short.data[0].embedding), 512)
        self.assertAlmostEqual(norm(short.data[0].embedding), 1.0, places=5)


class ErrorTests(TestCase):
    async def expect(
        self,
        live: Live,
        body: Any,
        param: str | None,
        code: str | None = None,
        status: int = 400,
    ) -> dict[str, Any]:
        response, payload = await live.json("POST", PATH, body)
        self.assertEqual(response.code, status, (body, payload))
        validate(payload, "ErrorResponse")
        error: dict[str, Any] = payload["error"]
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertEqual((error["param"], error["code"]), (param, code), body)
        return error

    async def test_bad_inputs_name_the_param(self) -> None:
        live = await start(self)
        m = {"model": SMALL}
        error = await self.expect(live, {**m, "input": ""}, "input")
        self.assertIn("'$.input' is invalid", error["message"])
        await self.expect(live, m, "input", "missing_required_parameter")
        await self.expect(live, {**m, "input": []}, "input", "empty_array")
        await self.expect(
            live, {**m, "input": ["x"] * 2049}, "input", "array_above_max_length"
        )
        await self.expect(live, {**m, "input": ["ok", ""]}, "input")
        await self.expect(live, {**m, "input": ["ok", 3]}, "input", "invalid_type")
        await self.expect(live, {**m, "input": [1, "a"]}, "input", "invalid_type")
        await self.expect(live, {**m, "input": [1, -2]}, "input")
        await self.expect(live, {**m, "input": [[1], []]}, "input")
        await self.expect(live, {**m, "input": [[1], 2]}, "input", "invalid_type")
        await self.expect(live, {**m, "input": [True]}, "input", "invalid_type")
        await self.expect(live, {**m, "input": {"a": 1}}, "input", "invalid_type")
        await self.expect(live, {**m, "input": 5}, "input", "invalid_type")
        await self.expect(live, {**m, "input": "word " * 9000}, "input")
        await self.expect(live, {"input": "hi"}, "model")
        await self.expect(live, {"model": 3, "input": "hi"}, "model", "invalid_type")
        # Exactly 2048 is fine.
        response, _ = await live.json("POST", PATH, {**m, "input": ["x"] * 2048})
        self.assertEqual(response.code, 200)

    async def test_bad_options_name_the_param(self) -> None:
        live = await start(self)
        m = {"model": SMALL, "input": "hi"}
        await self.expect(live, {**m, "dimensions": 0}, "dimensions", "invalid_value")
        await self.expect(
            live, {**m, "dimensions": "256"}, "dimensions", "invalid_type"
        )
        await self.expect(
            live, {**m, "dimensions": 1537}, "dimensions", "invalid_value"
        )
        error = await self.expect(
            live,
            {"model": "text-embedding-ada-002", "input": "hi", "dimensions": 256},
            "dimensions",
        )
        self.assertIn("does not support specifying dimensions", error["message"])
        await self.expect(
            live, {**m, "encoding_format": "hex"}, "encoding_format", "invalid_value"
        )
        await self.expect(
            live, {**m, "encoding_format": 1}, "encoding_format", "invalid_type"
        )
        await self.expect(live, {**m, "user": 1}, "user", "invalid_type")
        response, payload = await live.json("POST", PATH, [m])
        self.assertEqual(response.code, 400)
        validate(payload, "ErrorResponse")


class EngineTests(TestCase):
    def test_deterministic_across_rebuilt_spaces(self) -> None:
        first = engine.embed(SMALL, CAT)
        engine._space.cache_clear()
        self.assertEqual(engine.embed(SMALL, CAT), first)
        self.assertNotEqual(engine.embed("text-embedding-ada-002", CAT), first)
        self.assertNotEqual(engine.embed(SMALL, CAT + " "), first)

    def test_similarity_ordering(self) -> None:
        base = engine.embed(SMALL, "red apples and green pears")
        near = engine.embed(SMALL, "green apples and red pears")
        some = engine.embed(SMALL, "apples on the table")
        far = engine.embed(SMALL, "the stock market closed lower")
        self.assertGreater(cosine(base, near), cosine(base, some))
        self.assertGreater(cosine(base, some), cosine(base, far))

    def test_case_and_whitespace_do_not_matter_much(self) -> None:
        a = engine.embed(SMALL, "Hello  World")
        b = engine.embed(SMALL, "hello world")
        self.assertGreater(cosine(a, b), 0.8)

    def test_edge_texts_are_unit(self) -> None:
        for item in (" ", "!", "\n\n", "日本語のテキスト", (0,), (5, 5, 5)):
            vector = engine.embed(SMALL, item)
            self.assertAlmostEqual(norm(vector), 1.0, places=5)

    def test_request_model(self) -> None:
        request = parse_embeddings_request(
            b'{"model": "m", "input": [[1, 2]], "dimensions": 8.0}'
        )
        self.assertEqual(request.inputs, ((1, 2),))
        self.assertEqual(request.dimensions, 8)
        self.assertEqual(request.encoding_format, "float")
        with self.assertRaises(ApiError):
            parse_embeddings_request(b'{"model": "m", "input": [null]}')
