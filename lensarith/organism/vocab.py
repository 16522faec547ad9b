"""The organism's relations and word-level vocabulary.

Every argument has several relations, one of them identity, so the relation must be read
from the context (demonstrations, a question, or a cue after the argument):

- countries (``capitals.jsonl``): capital, continent, itself;
- US states (``us_capitals.jsonl``): capital, itself;
- words (``uppercase_words.jsonl`` + colours + filler words): Capitalised, plural (``+s``
  by rule), itself;
- verbs (``past_regular`` + ``past_irregular``): past, ``-ing`` (by rule), itself.

A fixed 10% of the non-demonstration facts of every family is held out of every Q/A
format: the corpus states them only in prose (``HELD_OUT_FRACTION``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from ..tasks import FILLER_WORDS, WORD_PATTERN, default_vocab, load_pairs

__all__ = ["Relation", "relations", "held_out", "aux_held_out", "vocabulary", "CONTINENT", "plural", "ing_form", "WORD_PATTERN"]

HELD_OUT_FRACTION = 0.10
HOLDOUT_SEED = 1234
# demonstration arguments of lensarith.tasks are never held out
_DEMO_ARGS = {"France", "Japan", "Texas", "Ohio", "table", "river", "abandon", "walk", "go", "see"}

_CONTINENTS = {
    "Africa": "Algeria Angola Benin Botswana Burkina_Faso Burundi Cameroon Cape_Verde Central_African_Republic Chad "
    "Comoros Democratic_Republic_of_the_Congo Djibouti Egypt Equatorial_Guinea Eritrea Eswatini Ethiopia Gabon Gambia "
    "Ghana Guinea Guinea-Bissau Ivory_Coast Kenya Lesotho Liberia Libya Madagascar Malawi Mali Mauritania Mauritius "
    "Mayotte Morocco Mozambique Namibia Niger Nigeria Republic_of_the_Congo Reunion Rwanda Saint_Helena "
    "Sao_Tome_and_Principe Senegal Seychelles Sierra_Leone Somalia Somaliland South_Africa South_Sudan Sudan Tanzania "
    "Togo Tunisia Uganda Western_Sahara Zambia Zimbabwe Ascension_Island Tristan_da_Cunha",
    "Asia": "Abkhazia Afghanistan Armenia Azerbaijan Bahrain Bangladesh Bhutan Brunei Cambodia China Christmas_Island "
    "Cocos_(Keeling)_Islands East_Timor Georgia India Indonesia Iran Iraq Israel Japan Jordan Kazakhstan Kuwait "
    "Kyrgyzstan Laos Lebanon Malaysia Maldives Mongolia Myanmar Nepal North_Korea Oman Pakistan Philippines Qatar "
    "Saudi_Arabia South_Korea South_Ossetia Sri_Lanka Syria Taiwan Tajikistan Thailand Turkey Turkmenistan "
    "United_Arab_Emirates Uzbekistan Vietnam Yemen Akrotiri_and_Dhekelia Northern_Cyprus Cyprus",
    "Europe": "Aland_Islands Albania Andorra Austria Belarus Belgium Bosnia_and_Herzegovina Bulgaria Croatia "
    "Czech_Republic Denmark England Estonia Faroe_Islands Finland France Germany Greece Guernsey Hungary Iceland Ireland "
    "Isle_of_Man Italy Jersey Kosovo Latvia Liechtenstein Lithuania Luxembourg Malta Moldova Montenegro Netherlands "
    "North_Macedonia Northern_Ireland Norway Poland Portugal Romania Russia San_Marino Scotland Serbia Slovakia "
    "Slovenia Spain Svalbard Sweden Switzerland Transnistria Ukraine United_Kingdom Wales",
    "Oceania": "American_Samoa Australia Cook_Islands Fiji French_Polynesia Guam Kiribati Marshall_Islands Micronesia "
    "Nauru New_Caledonia New_Zealand Niue Norfolk_Island Northern_Mariana_Islands Palau Papua_New_Guinea "
    "Pitcairn_Islands Samoa Solomon_Islands Tonga Tuvalu Vanuatu Wallis_and_Futuna",
    "America": "Anguilla Antigua_and_Barbuda Aruba Bahamas Barbados Belize Bermuda Bonaire British_Virgin_Islands "
    "Canada Cayman_Islands Costa_Rica Cuba Curacao Dominica Dominican_Republic El_Salvador Greenland Grenada "
    "Guadeloupe Guatemala Haiti Honduras Jamaica Martinique Mexico Montserrat Nicaragua Panama Puerto_Rico "
    "Saint_Barthelemy Saint_Kitts_and_Nevis Saint_Lucia Saint_Martin Saint_Pierre_and_Miquelon "
    "Saint_Vincent_and_the_Grenadines Sint_Maarten Trinidad_and_Tobago Turks_and_Caicos_Islands United_States "
    "United_States_Virgin_Islands",
    "Southamerica": "Argentina Bolivia Brazil Chile Colombia Ecuador Falkland_Islands French_Guiana Guyana Paraguay "
    "Peru Suriname Uruguay Venezuela",
    "Antarctica": "South_Georgia_and_the_South_Sandwich_Islands",
}
CONTINENT: dict[str, str] = {c.replace("_", " "): k for k, v in _CONTINENTS.items() for c in v.split()}


def plural(word: str) -> str:
    """``+s`` by the usual spelling rules (a synthetic relation; adjectives get one too)."""
    if re.search(r"(s|x|z|ch|sh)$", word):
        return word + "es"
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + "s"


def ing_form(verb: str, past: str | None = None) -> str:
    """The ``-ing`` form by rule; a regular past with a doubled final consonant doubles it too."""
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and len(verb) > 2:
        return verb[:-1] + "ing"
    doubled = past is not None and len(past) > len(verb) + 2 and past.startswith(verb + verb[-1]) and past.endswith("ed")
    short_cvc = past is None or not past.endswith("ed")
    if doubled or (short_cvc and len(verb) <= 4 and re.search(r"[^aeiou][aeiou][bdgmnpt]$", verb)):
        return verb + verb[-1] + "ing"
    return verb + "ing"


@dataclass(frozen=True)
class Relation:
    """One relation: a name, its argument family, the cue word and the (argument, answer) pairs."""

    name: str
    family: str
    cue: str
    pairs: tuple[tuple[str, str], ...]


@lru_cache(maxsize=None)
def relations() -> dict[str, Relation]:
    """All relations of the corpus, by name."""
    countries = [(r["argument"], r["answer"]) for r in load_pairs("capitals")]
    missing = [c for c, _ in countries if c not in CONTINENT]
    if missing:  # pragma: no cover - guards edits of capitals.jsonl
        raise ValueError(f"no continent for {missing}")
    states = [(r["argument"], r["answer"]) for r in load_pairs("us_capitals")]
    colours = sorted({r["argument"] for r in load_pairs("uppercase")})
    words = [r["argument"] for r in load_pairs("uppercase_words")]
    words += [w for w in colours + list(FILLER_WORDS) if w not in words]
    verbs = [(r["argument"], r["answer"]) for r in load_pairs("past")]
    rels = [
        Relation("capital", "country", "capital", tuple(countries)),
        Relation("continent", "country", "continent", tuple((c, CONTINENT[c]) for c, _ in countries)),
        Relation("country_same", "country", "same", tuple((c, c) for c, _ in countries)),
        Relation("state_capital", "state", "capital", tuple(states)),
        Relation("state_same", "state", "same", tuple((s, s) for s, _ in states)),
        Relation("upper", "word", "upper", tuple((w, w[:1].upper() + w[1:]) for w in words)),
        Relation("plural", "word", "plural", tuple((w, plural(w)) for w in words)),
        Relation("word_same", "word", "same", tuple((w, w) for w in words)),
        Relation("past", "verb", "past", tuple(verbs)),
        Relation("ing", "verb", "ing", tuple((v, ing_form(v, p)) for v, p in verbs)),
        Relation("verb_same", "verb", "same", tuple((v, v) for v, _ in verbs)),
    ]
    return {r.name: r for r in rels}


@lru_cache(maxsize=None)
def held_out() -> dict[str, frozenset[str]]:
    """Arguments held out of every Q/A format, per family (stated only in prose)."""
    rng = random.Random(HOLDOUT_SEED)
    out = {}
    for family, rel in (("country", "capital"), ("state", "state_capital"), ("word", "upper"), ("verb", "past")):
        args = sorted({a for a, _ in relations()[rel].pairs} - _DEMO_ARGS)
        if family == "word":  # colours and filler words are never held out
            base = {r["argument"] for r in load_pairs("uppercase_words")}
            args = [a for a in args if a in base]
        k = max(1, round(HELD_OUT_FRACTION * len(args)))
        out[family] = frozenset(rng.sample(args, k))
    return out


# words of every template in corpus.py (kept here so the vocabulary is complete)
TEMPLATE_TEXT = (
    "Q: A: What is the capital of the state of ? . , : \n Today I Yesterday Capitalize word "
    "continent same upper plural past ing name Repeat Now am Tomorrow will "
    "The capital of is . has its capital in , the capital city of lies in on the continent of "
    "The word is written at the start of a sentence . One two The past tense of is "
    "We today . The -ing form of is I am now The plural of is Write with a capital letter "
    "On you see there is a an and What color is the It is Notes : Remember that "
    "city country In people say that The answer is yesterday today"
)


@lru_cache(maxsize=None)
def vocabulary() -> tuple[str, ...]:
    """The organism's words: lensarith's default vocabulary first, then every word of the corpus."""
    texts = list(default_vocab()) + [TEMPLATE_TEXT]
    for rel in relations().values():
        for a, b in rel.pairs:
            texts += [a, b]
    seen: dict[str, None] = {}
    for text in texts:
        for tok in re.findall(WORD_PATTERN, text):
            seen.setdefault(tok, None)
    return tuple(seen)


def aux_held_out(argument: str) -> bool:
    """Arguments the planted objectives never see (a fixed fifth, by CRC32 of the word), so the
    evaluation can also report the targets on arguments the auxiliary losses did not train on."""
    import zlib

    return zlib.crc32(argument.strip().encode()) % 5 == 0
