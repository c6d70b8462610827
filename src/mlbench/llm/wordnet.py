"""WordNet 3.0's database files (Debian ``wordnet-base``: ``/usr/share/wordnet/data.{noun,verb,adj,adv}``) read
into synsets: the offline text the language-model minis fine-tune on.

A data line is ``offset lex_filenum ss_type w_cnt (word lex_id)... p_cnt (pointer offset pos source/target)...
[frames] | gloss``, where the word count is hexadecimal, the pointer count decimal, and the gloss is the
definition followed by ``; "example"`` quotes. Lines starting with two spaces are the licence header.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from mlbench.errors import DataError

WORDNET_DIR = Path("/usr/share/wordnet")
FILES = ("noun", "verb", "adj", "adv")
POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
_MARKER = re.compile(r"\((a|p|ip)\)$")  # an adjective's syntactic marker: beautiful(a)
_QUOTED = re.compile(r'"([^"]*)"')


@dataclass(frozen=True)
class Synset:
    offset: str
    pos: str  # n, v, a, s (satellite adjective) or r
    lemmas: tuple[str, ...]  # as written, underscores as spaces (adjective markers kept: see clean_lemma)
    definition: str  # the gloss up to its examples
    examples: tuple[str, ...]  # the gloss's quoted examples
    hypernyms: tuple[tuple[str, str], ...]  # (offset, pos) of the '@' and '@i' pointers

    @property
    def key(self) -> tuple[str, str]:
        return self.offset, self.pos

    def held_out(self, every: int = 20) -> bool:
        """1 synset in ``every`` held out for evaluation, by a hash of its offset and part of speech."""
        return int(hashlib.sha256(self.offset.encode() + self.pos.encode()).hexdigest(), 16) % every == 0


def clean_lemma(lemma: str) -> str:
    """A lemma without its adjective marker (``beautiful(a)`` -> ``beautiful``)."""
    return _MARKER.sub("", lemma)


def parse_line(line: str) -> Synset | None:
    """One data line as a Synset; None for header lines and synsets without a definition."""
    if line.startswith("  ") or " | " not in line:
        return None
    head, gloss = line.split(" | ", 1)
    fields = head.split()
    offset, pos, n_words = fields[0], fields[2], int(fields[3], 16)
    lemmas = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(n_words))
    at = 4 + 2 * n_words
    n_ptrs = int(fields[at])
    hypernyms = []
    for i in range(n_ptrs):
        symbol, target, target_pos = fields[at + 1 + 4 * i:at + 4 + 4 * i]
        if symbol in ("@", "@i"):
            hypernyms.append((target, target_pos))
    definition = gloss.split('; "')[0].strip().rstrip(";").strip()
    if not definition:
        return None
    rest = gloss[len(gloss.split('; "')[0]):]
    examples = tuple(e.strip() for e in _QUOTED.findall(rest) if e.strip())
    return Synset(offset, pos, lemmas, definition, examples, tuple(hypernyms))


def synsets(folder: Path = WORDNET_DIR, *, needed_by: str = "the language-model minis") -> list[Synset]:
    """Every synset with a definition, file by file (noun, verb, adj, adv) in the files' order."""
    files = [folder / f"data.{p}" for p in FILES]
    if not all(f.is_file() for f in files):
        raise DataError(f"WordNet's database files not found in {folder}",
                        f"install them with `apt-get install wordnet-base` ({needed_by} use them)")
    out = []
    for f in files:
        for line in f.read_text(encoding="latin-1").splitlines():
            s = parse_line(line)
            if s is not None:
                out.append(s)
    return out
