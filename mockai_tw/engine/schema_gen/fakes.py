"""Plausible content: values for string formats, and hints from property names.

"email" gets an address, "price" a price, ``format: uuid`` a UUID, all drawn
from the caller's ``random.Random``. Knows words and formats, not JSON Schema.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from random import Random
from typing import Any


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    """A word list written as one string (keeps long lists readable)."""
    return tuple(text.split(sep))


_FIRST = _words(
    "Alice Bob Carol David Emma Frank Grace Henry Isabel Jack Karen Liam Maria "
    "Noah Olivia Peter Quinn Rachel Samuel Sofia Thomas Uma Victor Wendy Yusuf "
    "Zoe Hana Lucas Amira Mateo Priya Chen Elena Omar Ingrid Kenji"
)
_LAST = _words(
    "Smith Johnson Garcia Miller Davis Martinez Lopez Wilson Anderson Taylor "
    "Moore Jackson Martin Lee Thompson White Harris Clark Lewis Walker Young "
    "King Wright Scott Nguyen Hill Green Adams Baker Nelson Patel Kim Rossi"
)
_CITIES = _words(
    "London|Paris|Berlin|Madrid|Rome|Amsterdam|Vienna|Prague|Lisbon|Dublin|"
    "New York|San Francisco|Chicago|Toronto|Seattle|Austin|Boston|Sydney|"
    "Melbourne|Tokyo|Osaka|Seoul|Singapore|Mumbai|Cape Town|Nairobi|Cairo|"
    "Buenos Aires|Mexico City|Sao Paulo|Stockholm|Oslo|Helsinki|Zurich",
    "|",
)
_COUNTRIES = _words(
    "United States|Canada|Mexico|Brazil|Argentina|United Kingdom|Ireland|France|"
    "Germany|Spain|Portugal|Italy|Netherlands|Sweden|Norway|Finland|Poland|"
    "Japan|South Korea|China|India|Singapore|Australia|New Zealand|Kenya|"
    "Nigeria|South Africa|Egypt|Turkey|Switzerland",
    "|",
)
_COMPANIES = _words(
    "Acme Corp|Globex|Initech|Umbrella Labs|Stark Industries|Wayne Enterprises|"
    "Hooli|Vandelay Industries|Soylent Co|Cyberdyne Systems|Blue Harbor Ltd|"
    "Northwind Traders|Contoso|Fabrikam|Tailspin Toys|Aperture Science",
    "|",
)
_STREETS = _words(
    "Main Street|Oak Avenue|Maple Drive|Cedar Lane|Park Road|Elm Street|"
    "High Street|Station Road|Church Lane|River Walk|Sunset Boulevard|Hill Road",
    "|",
)
_COLORS = _words("red blue green yellow purple orange black white gray teal navy")
_LANGUAGES = _words(
    "English Spanish French German Italian Portuguese Japanese Korean "
    "Mandarin Hindi Arabic Dutch Swedish"
)
_CURRENCIES = _words("USD EUR GBP JPY CHF CAD AUD CNY INR SEK")
_STATUSES = _words("active pending completed cancelled archived draft open closed")
_WORDS = _words(
    "apple river stone cloud garden market signal harbor forest summer winter "
    "bridge engine planet silver orbit canvas pixel vector anchor beacon "
    "meadow crystal lantern compass velvet thunder maple cedar falcon "
    "copper ember glacier horizon island jungle kettle ladder mosaic nectar"
)
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
KEY_WORDS = _words("alpha beta gamma delta epsilon zeta theta kappa sigma omega")
_DOMAINS = _words("example.com example.org example.net test.io demo.dev")
_SENTENCES = (
    "A compact, lightweight design built for everyday use.",
    "The meeting covered the quarterly roadmap and next steps.",
    "Fresh ingredients, simple preparation and bold flavors.",
    "This release improves performance and fixes several bugs.",
    "A quiet neighborhood close to parks, shops and transit.",
    "The report summarizes the key findings from the survey.",
    "Customers praised the fast delivery and friendly support.",
    "An introductory guide to the basics of the topic.",
    "The team delivered the project ahead of schedule.",
    "Sunny in the morning with light clouds later in the day.",
    "A well-balanced mix of practical tips and examples.",
    "The package includes setup instructions and a warranty.",
    "Results improved steadily over the last three months.",
    "A short walk from the station with a view of the river.",
    "The proposal outlines costs, risks and a timeline.",
    "Everything you need to get started in a few minutes.",
)


def _tokens(name: str) -> list[str]:
    """camelCase / snake_case / kebab-case words of a property name."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def _person(rng: Random) -> tuple[str, str]:
    return rng.choice(_FIRST), rng.choice(_LAST)


def _email(rng: Random, name: str = "") -> str:
    """first.last@domain, like a real address."""
    first, last = _person(rng)
    return f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}"


def _hostname(rng: Random, name: str = "") -> str:
    return f"{rng.choice(('www', 'api', 'mail', 'app', 'cdn'))}.{rng.choice(_DOMAINS)}"


def _url(rng: Random, name: str = "") -> str:
    path = "/".join(rng.sample(_WORDS, rng.randint(1, 2)))
    return f"https://{_hostname(rng)}/{path}"


def _date(rng: Random, name: str = "") -> str:
    year, month, day = rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28)
    return f"{year:04d}-{month:02d}-{day:02d}"


def _time(rng: Random, name: str = "") -> str:
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    return f"{hour:02d}:{minute:02d}:{second:02d}Z"


def _date_time(rng: Random, name: str = "") -> str:
    return f"{_date(rng)}T{_time(rng)}"


def _uuid(rng: Random, name: str = "", version: int = 4) -> str:
    """A UUID from the rng (uuid4() would read the OS random source)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=version))


def _ipv4(rng: Random, name: str = "") -> str:
    first = rng.choice((10, 172, 192, 203))
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _ipv6(rng: Random, name: str = "") -> str:
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(64)))


def _ipv4_net(rng: Random, name: str = "") -> str:
    return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24"


def _ipv6_net(rng: Random, name: str = "") -> str:
    return f"2001:db8:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::/64"


def _ipv4_interface(rng: Random, name: str = "") -> str:
    return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}/24"


def _ipv6_interface(rng: Random, name: str = "") -> str:
    return f"2001:db8::{rng.getrandbits(16):x}/64"


def _base64(rng: Random, name: str = "") -> str:
    return base64.b64encode(phrase(rng).encode()).decode()


def _duration(rng: Random, name: str = "") -> str:
    return rng.choice(
        (
            f"PT{rng.randint(1, 59)}M",
            f"P{rng.randint(1, 30)}D",
            f"PT{rng.randint(1, 12)}H",
        )
    )


FORMATS: dict[str, Any] = {
    "date-time": _date_time,
    "date": _date,
    "time": _time,
    "email": _email,
    "idn-email": _email,
    "uri": _url,
    "iri": _url,
    "uri-reference": lambda rng, name: "/" + "/".join(rng.sample(_WORDS, 2)),
    "iri-reference": lambda rng, name: "/" + "/".join(rng.sample(_WORDS, 2)),
    "uri-template": lambda rng, name: (
        f"https://{_hostname(rng)}/{rng.choice(_WORDS)}/{{id}}"
    ),
    "uuid": _uuid,
    # pydantic's own formats, so that model_validate() accepts what it gets
    "uuid1": lambda rng, name: _uuid(rng, name, 1),
    "uuid3": lambda rng, name: _uuid(rng, name, 3),
    "uuid4": _uuid,
    "uuid5": lambda rng, name: _uuid(rng, name, 5),
    "ipvanyaddress": _ipv4,
    "ipvanynetwork": _ipv4_net,
    "ipv4network": _ipv4_net,
    "ipv6network": _ipv6_net,
    "ipvanyinterface": _ipv4_interface,
    "ipv4interface": _ipv4_interface,
    "ipv6interface": _ipv6_interface,
    "multi-host-uri": _url,
    "password": lambda rng, name: "".join(rng.choices(_ALNUM, k=16)),
    "base64": _base64,
    "binary": lambda rng, name: phrase(rng),
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "hostname": _hostname,
    "idn-hostname": _hostname,
    "duration": _duration,
    "json-pointer": lambda rng, name: f"/{rng.choice(_WORDS)}/{rng.randint(0, 9)}",
    "relative-json-pointer": lambda rng, name: (
        f"{rng.randint(0, 3)}/{rng.choice(_WORDS)}"
    ),
    "regex": lambda rng, name: rng.choice(
        ("^[a-z]+$", "\\d{3}-\\d{4}", "^[A-Z][a-z]*")
    ),
}


def phrase(rng: Random) -> str:
    """A few random words: a neutral string when the name hints nothing."""
    return " ".join(rng.sample(_WORDS, rng.randint(2, 3)))


def fit(text: str, lo: int, hi: int | None, rng: Random) -> str:
    """Stretch with words or cut so that lo <= len(text) <= hi."""
    while len(text) < lo:
        text += " " + rng.choice(_WORDS)
    if hi is not None and len(text) > hi:
        text = text[:hi]
        stripped = text.rstrip()
        if len(stripped) >= lo:
            text = stripped
    return text


def text_hint(name: str, rng: Random) -> str | None:
    """Plausible text for a property name, or None when the name says nothing."""
    t = _tokens(name)
    if not t:
        return rng.choice(_SENTENCES)

    def has(*words: str) -> bool:
        return any(w in t for w in words)

    last = t[-1]
    if has("email", "mail"):
        return _email(rng)
    if has("url", "uri", "link", "website", "homepage", "href", "avatar", "image"):
        return _url(rng)
    if has("firstname", "given") or (has("first") and has("name")):
        return rng.choice(_FIRST)
    if has("lastname", "surname", "family") or (has("last") and has("name")):
        return rng.choice(_LAST)
    if has("username", "login", "handle", "nickname") or (has("user") and has("name")):
        first, last_name = _person(rng)
        return f"{first[0].lower()}{last_name.lower()}{rng.randint(1, 99)}"
    if has("company", "organization", "organisation", "employer", "brand", "org"):
        return rng.choice(_COMPANIES)
    if has("city", "town"):
        return rng.choice(_CITIES)
    if has("country", "nationality"):
        return rng.choice(_COUNTRIES)
    if has("street", "address"):
        return f"{rng.randint(1, 999)} {rng.choice(_STREETS)}"
    if has("zip", "postal", "postcode", "zipcode"):
        return f"{rng.randint(10000, 99999)}"
    if has("phone", "mobile", "tel", "telephone", "fax"):
        return f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    if has("domain", "hostname", "host"):
        return _hostname(rng)
    if has("uuid", "guid") or last in ("id", "ids"):
        return _uuid(rng)
    if last == "at" or has("timestamp", "datetime"):
        return _date_time(rng)
    if has("date", "birthday", "dob", "birthdate", "day"):
        return _date(rng)
    if has("time"):
        return f"{rng.randint(7, 20):02d}:{rng.choice((0, 15, 30, 45)):02d}"
    if has("color", "colour"):
        return rng.choice(_COLORS)
    if has("language", "lang", "locale"):
        return rng.choice(_LANGUAGES)
    if has("currency"):
        return rng.choice(_CURRENCIES)
    if has("status", "state"):
        return rng.choice(_STATUSES)
    if has(
        "name",
        "author",
        "person",
        "customer",
        "owner",
        "recipient",
        "sender",
        "contact",
        "manager",
        "assignee",
        "attendee",
        "participant",
        "speaker",
        "member",
        "employee",
        "user",
        "student",
        "teacher",
        "patient",
        "host",
    ):
        return " ".join(_person(rng))
    if has("title", "headline", "subject", "heading", "caption"):
        return " ".join(w.capitalize() for w in rng.sample(_WORDS, rng.randint(2, 4)))
    if has(
        "description",
        "summary",
        "content",
        "text",
        "body",
        "comment",
        "message",
        "note",
        "notes",
        "bio",
        "explanation",
        "reason",
        "reasoning",
        "answer",
        "details",
        "detail",
        "abstract",
        "review",
        "feedback",
        "response",
        "question",
        "instructions",
        "step",
        "steps",
        "analysis",
        "thought",
        "output",
        "result",
        "conclusion",
    ):
        return " ".join(rng.sample(_SENTENCES, rng.randint(1, 2)))
    if has("slug"):
        return "-".join(rng.sample(_WORDS, 2))
    if has("password", "secret", "token", "key", "hash"):
        return "".join(rng.choices(_ALNUM, k=24))
    if has("sku", "code"):
        letters = rng.choice("ABCDEFGHJK") + rng.choice("LMNPQRSTUV")
        return f"{letters}-{rng.randint(1000, 9999)}"
    if has("version"):
        return f"{rng.randint(0, 3)}.{rng.randint(0, 12)}.{rng.randint(0, 20)}"
    if has(
        "tag", "category", "label", "keyword", "topic", "genre", "kind", "type", "word"
    ):
        return rng.choice(_WORDS)
    return None


def number_hint(name: str, *, integer: bool) -> tuple[float, float, int] | None:
    """A plausible (low, high, decimal places) for a numeric property name."""
    t = _tokens(name)

    def has(*words: str) -> bool:
        return any(w in t for w in words)

    if has("age"):
        return 18, 80, 0
    if has("year"):
        return 1990, 2026, 0
    if has("month"):
        return 1, 12, 0
    if has("day"):
        return 1, 28, 0
    if has("hour", "hours"):
        return 0, 23, 0
    if has("minute", "minutes", "second", "seconds"):
        return 0, 59, 0
    if has("latitude", "lat"):
        return -90, 90, 4
    if has("longitude", "lon", "lng"):
        return -180, 180, 4
    if has(
        "price",
        "cost",
        "amount",
        "total",
        "balance",
        "salary",
        "fee",
        "subtotal",
        "tax",
    ):
        return (1, 500, 0) if integer else (1, 500, 2)
    if has("rating", "stars"):
        return (1, 5, 0) if integer else (1, 5, 1)
    if has("score"):
        return (0, 100, 0) if integer else (0, 10, 1)
    if has("probability", "confidence", "ratio", "weight"):
        return (0, 1, 0) if integer else (0, 1, 2)
    if has("percent", "percentage"):
        return 0, 100, 1
    if has(
        "count", "quantity", "qty", "number", "num", "size", "page", "rank", "level"
    ):
        return 1, 20, 0
    if has("id"):
        return 1, 9999, 0
    if has("temperature", "temp"):
        return -10, 35, 1
    return None


def singular(name: str) -> str:
    """A list's name hints its items' content: "emails" -> "email"."""
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith(("sses", "xes", "ches", "shes")):
        return name[:-2]
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name
