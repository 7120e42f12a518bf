"""Name vocabulary: every name string the simulator can write, with precomputed variants.

Names are handled as integer codes into one vocabulary so that recording errors are array
lookups: `typo[v, j]` is the j-th keyboard-typo spelling of name `v`, `phon[v, :phon_n[v]]`
its phonetic / transliteration variants, `nick[v, :nick_n[v]]` its nicknames (or the formal
name of a nickname). Variants are generated once, deterministically (seeded by the name).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl
from anyascii import anyascii

from datafirst_assets.simulate import names as N
from datafirst_assets.simulate.util import StringTable

N_TYPOS = 6
N_PHON = 4
N_NICK = 4

_KEYBOARD = {
    "q": "wa",
    "w": "qes",
    "e": "wrd",
    "r": "etf",
    "t": "ryg",
    "y": "tuh",
    "u": "yij",
    "i": "uok",
    "o": "ipl",
    "p": "ol",
    "a": "qsz",
    "s": "awdxz",
    "d": "sefxc",
    "f": "drgcv",
    "g": "fthvb",
    "h": "gyjbn",
    "j": "huknm",
    "k": "jilm",
    "l": "kop",
    "z": "asx",
    "x": "zsdc",
    "c": "xdfv",
    "v": "cfgb",
    "b": "vghn",
    "n": "bhjm",
    "m": "njk",
}

_PHONETIC_RULES: tuple[tuple[str, str], ...] = (
    (r"ph", "f"),
    (r"^f", "ph"),
    (r"ck", "k"),
    (r"^c(?=[aou])", "k"),
    (r"^k(?=[aou])", "c"),
    (r"y$", "ie"),
    (r"ie$", "y"),
    (r"ey$", "y"),
    (r"i$", "y"),
    (r"ou", "ow"),
    (r"ee", "ea"),
    (r"ea", "ee"),
    (r"ai", "ay"),
    (r"ay", "ai"),
    (r"son$", "sen"),
    (r"sen$", "son"),
    (r"^mac", "mc"),
    (r"^mc", "mac"),
    (r"th", "t"),
    (r"ll", "l"),
    (r"nn", "n"),
    (r"tt", "t"),
    (r"rr", "r"),
    (r"ss", "s"),
    (r"(?<=[aeiou])l(?=[aeiou])", "ll"),
    (r"(?<=[aeiou])n(?=[aeiou])", "nn"),
    (r"z", "s"),
    (r"(?<=[aeiou])s(?=[aeiou])", "z"),
    (r"w", "v"),
    (r"v", "w"),
    (r"'", ""),
    (r"-", " "),
    (r"ae", "a"),
    (r"oo", "u"),
    (r"(?<=[^aeiou])u(?=[^aeiou])", "oo"),
    (r"(?<=.)i(?=.)", "y"),
    (r"(?<=.)y(?=.)", "i"),
    (r"cz", "ch"),
    (r"sz", "sh"),
    (r"x", "ks"),
    (r"q", "k"),
    (r"kh", "k"),
    (r"dh", "d"),
    (r"(?<=.)j", "y"),
    (r"ei", "ie"),
    (r"ie(?=.)", "ei"),
    (r"(?<=.)a$", "ah"),
    (r"ah$", "a"),
    (r"(?<=.)e$", ""),
    (r"(?<=[^aeiou])$", "e"),
    (r"d$", "t"),
    (r"(?<=.)u", "o"),
    (r"(?<=.)o(?=.)", "u"),
)


def _recase(original: str, new: str) -> str:
    """Give `new` (lower case) a title-like case: capital first letter and after ' or - or space."""
    out = []
    cap = True
    for ch in new:
        out.append(ch.upper() if cap else ch)
        cap = ch in "'- "
    s = "".join(out)
    # keep interior capitals of Mc/Mac names when the prefix survived
    if original.startswith(("Mc", "Mac")) and len(original) > 3 and s[:2] == original[:2]:
        k = 2 if original.startswith("Mc") else 3
        if len(s) > k and s[:k].lower() == original[:k].lower():
            s = s[:k] + s[k].upper() + s[k + 1 :]
    return s


def _typos(name: str) -> list[str]:
    rnd = random.Random("typo:" + name)
    low = name.lower()
    found: list[str] = []
    tries = 0
    while len(found) < N_TYPOS and tries < 60:
        tries += 1
        if len(low) < 2:
            break
        # first letter errors are rare
        pos = rnd.randrange(0, len(low)) if rnd.random() < 0.08 else rnd.randrange(1, len(low))
        op = rnd.random()
        ch = low[pos]
        if not ch.isalpha() or (pos + 1 < len(low) and not low[pos + 1].isalpha()):
            continue
        if op < 0.35 and ch in _KEYBOARD:  # adjacent key
            new = low[:pos] + rnd.choice(_KEYBOARD[ch]) + low[pos + 1 :]
        elif op < 0.55 and len(low) > 3:  # deletion
            new = low[:pos] + low[pos + 1 :]
        elif op < 0.72:  # doubled letter
            new = low[:pos] + ch + low[pos:]
        elif op < 0.92 and pos + 1 < len(low):  # transposition
            new = low[:pos] + low[pos + 1] + ch + low[pos + 2 :]
        else:  # vowel swap
            vowels = "aeiou"
            if ch not in vowels:
                continue
            new = low[:pos] + rnd.choice(vowels.replace(ch, "")) + low[pos + 1 :]
        if not new or not new[0].isalpha():
            continue
        new = _recase(name, new)
        if new.lower() != low and new not in found:
            found.append(new)
    return found


def _phonetic_rule_variants(name: str) -> list[str]:
    low = name.lower()
    rnd = random.Random("phon:" + name)
    rules = list(_PHONETIC_RULES)
    rnd.shuffle(rules)
    found: list[str] = []
    for pat, rep in rules:
        new, n = re.subn(pat, rep, low, count=1)
        if n and len(new) >= 2 and new != low:
            cand = _recase(name, new)
            if cand not in found and cand.lower() != low:
                found.append(cand)
        if len(found) >= N_PHON:
            break
    return found


def _zipf(n: int, offset: float, exponent: float = 1.0) -> np.ndarray:
    p = 1.0 / (np.arange(n) + 1.0 + offset) ** exponent
    return p / p.sum()


@dataclass
class Vocab:
    strings: list[str]
    series: pl.Series
    typo: np.ndarray
    phon: np.ndarray
    phon_n: np.ndarray
    nick: np.ndarray
    nick_n: np.ndarray
    initial: np.ndarray
    db_first: np.ndarray
    db_second: np.ndarray
    ascii_of: np.ndarray  # the name with its accents dropped (itself when already ASCII)
    forename_pools: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    surname_pools: dict[str, tuple[np.ndarray, np.ndarray]]
    streets: pl.Series
    streets_abbreviated: pl.Series

    @property
    def size(self) -> int:
        return len(self.strings)

    def index(self, name: str) -> int:
        return self.strings.index(name)


def _double_barrelled(anglo_surnames: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """160 double-barrelled surnames from pairs of common anglo surnames (fixed seed)."""
    rnd = random.Random("double-barrel")
    top = anglo_surnames[:80]
    db_pairs: list[tuple[str, str]] = []
    while len(db_pairs) < 160:
        a, b = rnd.sample(top, 2)
        if (a, b) not in db_pairs and "'" not in a + b:
            db_pairs.append((a, b))
    return db_pairs, [f"{a}-{b}" for a, b in db_pairs]


def _phonetic_variants(index: dict[str, int], strings: list[str], add) -> dict[int, list[int]]:
    """Phonetic variants of every name: curated groups first, then spelling rules (new
    spellings are added to the vocabulary through `add`)."""
    phon_map: dict[int, list[int]] = {}
    for group in N.PHONETIC_GROUPS:
        ids = [index[n] for n in group]
        for i in ids:
            lst = phon_map.setdefault(i, [])
            for j in ids:
                if j != i and j not in lst:
                    lst.append(j)
    n_real = len(strings)
    for i in range(26, n_real):
        lst = phon_map.setdefault(i, [])
        if len(lst) >= N_PHON:
            continue
        for v in _phonetic_rule_variants(strings[i]):
            j = add(v)
            if j != i and j not in lst:
                lst.append(j)
            if len(lst) >= N_PHON:
                break
    return phon_map


def _nicknames(index: dict[str, int], V: int) -> tuple[np.ndarray, np.ndarray]:
    """(nicknames of each string, how many): formal name <-> nickname, both ways."""
    nick_map: dict[int, list[int]] = {}
    for formal, nicks in N.NICKNAMES.items():
        fi = index[formal]
        for n in nicks:
            ni = index[n]
            nick_map.setdefault(fi, []).append(ni)
            nick_map.setdefault(ni, []).append(fi)
    nick = np.full((V, N_NICK), -1, dtype=np.int32)
    nick_n = np.zeros(V, dtype=np.int8)
    for i, lst in nick_map.items():
        lst = list(dict.fromkeys(lst))[:N_NICK]
        nick[i, : len(lst)] = lst
        nick_n[i] = len(lst)
    return nick, nick_n


def _name_pools(index: dict[str, int], fore_lists, sur_lists, db_names: list[str]):
    """(forename pools, surname pools): ids and Zipf-like frequencies by rank per origin (and
    sex); a small share of double-barrelled surnames among anglo and caribbean ones."""
    fore_pools = {}
    for key, lst in fore_lists.items():
        fore_pools[key] = (np.array([index[n] for n in lst], dtype=np.int32), _zipf(len(lst), 3.0))
    sur_pools = {}
    for key, lst in sur_lists.items():
        ids = [index[n] for n in lst]
        p = _zipf(len(lst), 12.0)
        if key in ("anglo", "caribbean"):
            ids += [index[n] for n in db_names]
            p = np.concatenate([p * 0.985, np.full(len(db_names), 0.015 / len(db_names))])
        sur_pools[key] = (np.array(ids, dtype=np.int32), p / p.sum())
    return fore_pools, sur_pools


@lru_cache(maxsize=1)
def build_vocab() -> Vocab:
    """Every name string once (real names, nicknames, phonetic variants, typos, initials) with
    the index tables the recorder draws its errors from, and the name pools per origin."""
    table = StringTable()
    index, strings, add = table.index, table.strings, table.add

    letters = [add(chr(65 + i)) for i in range(26)]

    # base names
    fore_lists: dict[tuple[str, str], list[str]] = {}
    for key, parts in N.FORENAMES.items():
        fore_lists[key] = list(dict.fromkeys(n for part in parts for n in part))
    sur_lists: dict[str, list[str]] = {}
    for key, parts in N.SURNAMES.items():
        sur_lists[key] = list(dict.fromkeys(n for part in parts for n in part))
    for lst in (*fore_lists.values(), *sur_lists.values()):
        for n in lst:
            add(n)
    for formal, nicks in N.NICKNAMES.items():
        add(formal)
        for n in nicks:
            add(n)
    for group in N.PHONETIC_GROUPS:
        for n in group:
            add(n)

    db_pairs, db_names = _double_barrelled(sur_lists["anglo"])
    for n in db_names:
        add(n)

    phon_map = _phonetic_variants(index, strings, add)
    n_named = len(strings)  # real names + phonetic variants get typos too

    typo_rows: list[list[int]] = []
    for i in range(n_named):
        if i < 26:
            typo_rows.append([i] * N_TYPOS)
            continue
        ts = [add(t) for t in _typos(strings[i])] or [i]
        while len(ts) < N_TYPOS:
            ts.append(ts[len(ts) % max(1, len(ts))])
        typo_rows.append(ts[:N_TYPOS])

    # accents dropped by systems that store ASCII only (Zoë -> Zoe): every spelling, typos included
    ascii_rows = [add(anyascii(strings[i])) for i in range(len(strings))]

    V = len(strings)
    ascii_of = np.arange(V, dtype=np.int32)
    ascii_of[: len(ascii_rows)] = ascii_rows
    typo = np.repeat(np.arange(V, dtype=np.int32)[:, None], N_TYPOS, axis=1)
    typo[:n_named] = np.array(typo_rows, dtype=np.int32)
    phon = np.full((V, N_PHON), -1, dtype=np.int32)
    phon_n = np.zeros(V, dtype=np.int8)
    for i, lst in phon_map.items():
        lst = lst[:N_PHON]
        phon[i, : len(lst)] = lst
        phon_n[i] = len(lst)

    nick, nick_n = _nicknames(index, V)

    initial = np.array(
        [
            letters[ord(a[0].upper()) - 65] if a[:1].isalpha() and a[:1].isascii() else letters[0]
            for a in map(anyascii, strings)
        ],
        dtype=np.int32,
    )
    db_first = np.full(V, -1, dtype=np.int32)
    db_second = np.full(V, -1, dtype=np.int32)
    for (a, b), n in zip(db_pairs, db_names, strict=True):
        db_first[index[n]] = index[a]
        db_second[index[n]] = index[b]

    fore_pools, sur_pools = _name_pools(index, fore_lists, sur_lists, db_names)
    streets = [f"{w} {t}" for w in N.STREET_WORDS for t in N.STREET_TYPES]
    abbr = [f"{w} {N.STREET_ABBREVIATIONS.get(t, t)}" for w in N.STREET_WORDS for t in N.STREET_TYPES]

    return Vocab(
        strings=strings,
        series=pl.Series("vocab", strings, dtype=pl.Utf8),
        typo=typo,
        phon=phon,
        phon_n=phon_n,
        nick=nick,
        nick_n=nick_n,
        initial=initial,
        db_first=db_first,
        db_second=db_second,
        ascii_of=ascii_of,
        forename_pools=fore_pools,
        surname_pools=sur_pools,
        streets=pl.Series("street", streets),
        streets_abbreviated=pl.Series("street", abbr),
    )
