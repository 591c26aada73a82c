"""How far the data-free token approximation is from the real encodings.

Counts a sample of English prose, Chinese and Python code with the exact
o200k_base and cl100k_base encodings (bpe-openai) and with the approximation
mockai falls back to, and prints the relative error.  Needs bpe-openai.
"""

from __future__ import annotations

import inspect

from mockai_tw import config, delivery
from mockai_tw.engine import tokenizer
from mockai_tw.engine.tokenizer import Tokenizer

ENGLISH = """\
The mock answers every request the way the real service would, so that the
clients, frameworks and gateways in front of it cannot tell the difference.
Teams run it in continuous integration, on laptops without a network, in demos
and in load tests of their own gateways. It lets the operator decide what is
said, how fast it is said, and how it fails: a slow first token, a dropped
connection, a rate limit that refills, or a stream that stops halfway. Each of
these is reproducible from a seed, because a flaky test that cannot be replayed
teaches nobody anything. Numbers such as 3.14159, 2024-11-24 and 1,234,567 and
words like internationalization, counterproductive and misunderstanding are in
here on purpose, as are contractions: it's, they'll, we've, I'd.
"""

CHINESE = (
    "你好，有什么可以帮助你的吗？今天的天气是真的很不错，你应该好好的放松一下了？"
    "希望你学习golang，能够找到一份心仪的工作？人工智能是计算机科学的一个分支，"
    "它企图了解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。"
    "该领域的研究包括机器人、语言识别、图像识别、自然语言处理和专家系统等。"
)

CODE = inspect.getsource(delivery) + inspect.getsource(config)


def main() -> None:
    print(f"{'sample':12} {'encoding':12} {'exact':>7} {'approx':>7} {'error':>7}")
    for name, text in (
        ("English", ENGLISH * 5),
        ("Chinese", CHINESE * 5),
        ("Python", CODE),
    ):
        for encoding in ("o200k_base", "cl100k_base"):
            exact = tokenizer.for_model(
                "gpt-4o" if encoding == "o200k_base" else "gpt-4"
            )
            if not exact.exact:
                raise SystemExit("bpe-openai is not installed: nothing to compare with")
            approx = Tokenizer(encoding).count(text)
            real = exact.count(text)
            print(
                f"{name:12} {encoding:12} {real:7d} {approx:7d}"
                f" {100 * (approx - real) / real:+6.1f}%"
            )


if __name__ == "__main__":
    main()
