"""The prompt language of each scene: slots, the words that say them, and a parser back to slots.

A prompt describes how a clip starts. Its meaning is a set of *slots*, `{"red.x": "left",
"red.motion": "up-left", ...}` for bounce or `{"pole.tilt": "left", ...}` for the pendulum: the slots
that `worldsim.envs.captions` reads off a simulated episode's states, so a generated clip is scored by
reading its own states back into slots. `phrase` says a set of slots in varied wording (the captions
a prompt-conditioned world trains on); `parse` reads a prompt back into slots and refuses what it
cannot read with one `PromptError` naming the words it does not know, or the colour, object or
contradiction it cannot make.

A sentence is about one entity (bounce's balls by colour, the pendulum's pole, Reacher's target and
arm, Pusher's puck); "it" keeps the entity of the sentence before. Within a sentence a verb opens the
slot its words fill ("moving" the motion, "hits" what is hit first); other words say where the entity
starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

Phrases = tuple[tuple[str, ...], ...]


class PromptError(ValueError):
    """A prompt that cannot be read, or that asks for what the scene cannot be."""


@dataclass(frozen=True)
class Language:
    """One scene's prompt language.

    Attributes:
        scene: the scene's name.
        entities: entity -> (the words that name it, the slots it has).
        noun: a noun that may follow an entity's word ("ball"), or "".
        place: slot -> value -> phrases that set it with no verb before them ("on the left").
        verbs: slot -> (the verbs that open it, value -> the phrases after the verb).
        subjects: how a sentence names an entity, "{e}" its word ("the {e} ball").
        starts: the verbs before a place ("starts", "begins").
        absent: words for what the scene does not have -> the message saying what it has.
        filler: other words a prompt may use.
    """

    scene: str
    entities: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
    noun: str
    place: dict[str, dict[str, Phrases]]
    verbs: dict[str, tuple[tuple[str, ...], dict[str, Phrases]]]
    subjects: tuple[str, ...]
    starts: tuple[str, ...]
    absent: dict[str, str]
    filler: tuple[str, ...] = ("the", "a", "it", "and", "then", "first", "is")

    @property
    def slots(self) -> tuple[str, ...]:
        """Every slot, "entity.slot", in a fixed order."""
        return tuple(f"{e}.{s}" for e, (_, slots) in self.entities.items() for s in slots)

    def values(self, slot: str) -> tuple[str, ...]:
        """The values of a slot ("red.x" or "x")."""
        name = slot.split(".")[-1]
        return tuple(self.place[name]) if name in self.place else tuple(self.verbs[name][1])

    def vocabulary(self) -> tuple[str, ...]:
        """Every word a prompt of this scene may use, sorted."""
        words = set(self.filler) | set(self.starts) | {self.noun, "and", "then", "."}
        words |= {w for ws, _ in self.entities.values() for w in ws}
        words |= {w for s in self.subjects for w in s.replace("{e}", "").split()}
        for verbs, table in self.verbs.values():
            words |= set(verbs) | {w for ps in table.values() for p in ps for w in p}
        words |= {w for table in self.place.values() for ps in table.values() for p in ps for w in p}
        return tuple(sorted(w for w in words if w))


def words_of(text: str) -> list[str]:
    """A prompt's words as the model reads them: lower case, commas dropped, sentence ends as ".", and
    "an" read as "a" (the article says nothing a slot needs)."""
    if not isinstance(text, str):
        raise PromptError(f"a prompt is a string, got {type(text).__name__}")
    bad = sorted(set(re.sub(r"[A-Za-z\s.,;!'-]", "", text)))
    if bad:
        raise PromptError(f"the prompt has characters no prompt uses: {' '.join(bad)}")
    words = re.findall(r"[a-z]+|[.;!]", text.lower().replace("-", " "))
    return ["." if w in ";!" else "a" if w == "an" else w for w in words]


def _match(words: list[str], i: int, table: dict[str, Phrases]) -> tuple[str, int] | None:
    """The value whose longest phrase starts at words[i], and that phrase's length."""
    best = None
    for value, phrases in table.items():
        for p in phrases:
            if tuple(words[i : i + len(p)]) == p and (best is None or len(p) > best[1]):
                best = (value, len(p))
    return best


def parse(lang: Language, text: str) -> dict[str, str]:
    """The slots a prompt sets, {"entity.slot": value}; an empty prompt sets none.

    Raises:
        PromptError: for unknown words (all named), what the scene does not have, a slot said before
            any entity, a slot the entity does not have, or one slot given two values.
    """
    words = words_of(text)
    unknown = [w for w in dict.fromkeys(words) if w not in lang.vocabulary()]
    absent = [w for w in unknown if w in lang.absent]
    if absent:
        raise PromptError(f"{lang.scene} has no {absent[0]}: {lang.absent[absent[0]]}")
    if unknown:
        raise PromptError(f"{lang.scene} prompts do not use the word(s) {', '.join(repr(w) for w in unknown)}; "
                          f"`worldsim generate --scene {lang.scene} --vocabulary` lists the words they use")
    naming = {w: e for e, (ws, _) in lang.entities.items() for w in ws}
    opens = {v: s for s, (vs, _) in lang.verbs.items() for v in vs}
    entity = next(iter(lang.entities)) if len(lang.entities) == 1 else None
    slots: dict[str, str] = {}
    open_slot, i = None, 0
    while i < len(words):
        w = words[i]
        if w == ".":
            open_slot, i = None, i + 1
            continue
        if open_slot is not None:
            hit = _match(words, i, lang.verbs[open_slot][1])
            if hit is not None:
                _put(lang, slots, entity, open_slot, hit[0], words[i : i + hit[1]])
                open_slot, i = None, i + hit[1]
                continue
        if w in naming:
            entity, i = naming[w], i + 1
            if i < len(words) and lang.noun and words[i] == lang.noun:
                i += 1
            continue
        if w in opens:
            open_slot, i = opens[w], i + 1
            continue
        for slot, table in _anywhere(lang):
            hit = _match(words, i, table)
            if hit is not None:
                _put(lang, slots, entity, slot, hit[0], words[i : i + hit[1]])
                i += hit[1]
                break
        else:
            i += 1
    return slots


def _anywhere(lang: Language) -> list[tuple[str, dict[str, Phrases]]]:
    """The tables matched with no verb before them: the places, and the clauses (slots without verbs)."""
    return [*lang.place.items(), *((s, table) for s, (verbs, table) in lang.verbs.items() if not verbs)]


def _put(lang: Language, slots: dict[str, str], entity: str | None, slot: str, value: str, said: list[str]) -> None:
    if entity is None:
        raise PromptError(f"{' '.join(said)!r} is said before the prompt names what it is about "
                          f"({', '.join(lang.entities)})")
    if slot not in lang.entities[entity][1]:
        raise PromptError(f"{' '.join(said)!r} cannot be said of the {entity} (its slots: "
                          f"{', '.join(lang.entities[entity][1])})")
    key, name = f"{entity}.{slot}", f"{entity} {lang.noun}".strip()
    if slots.get(key, value) != value:
        raise PromptError(f"the prompt contradicts itself: the {name}'s {slot} is both {slots[key]!r} and {value!r}")
    slots[key] = value


def phrase(lang: Language, slots: dict[str, str], rng: np.random.Generator) -> str:
    """A caption saying exactly `slots` ({"entity.slot": value}), in wording drawn from `rng`."""
    by_entity: dict[str, dict[str, str]] = {}
    for key, value in slots.items():
        e, s = key.split(".")
        by_entity.setdefault(e, {})[s] = value
    order = [e for e in lang.entities if e in by_entity]
    if len(order) > 1 and rng.random() < 0.5:
        rng.shuffle(order)
    return " ".join(_sentence(lang, e, by_entity[e], rng) for e in order)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _sentence(lang: Language, entity: str, slots: dict[str, str], rng: np.random.Generator) -> str:
    """One sentence about `entity`: its subject, where it starts, then each verb's slot."""
    parts = [_pick(rng, lang.subjects).format(e=_pick(rng, lang.entities[entity][0]))]
    place = [s for s in lang.place if s in slots]
    if place:
        parts.append(_pick(rng, lang.starts) + " " + " ".join(" ".join(_pick(rng, lang.place[s][slots[s]]))
                                                              for s in place))
    for slot, (verbs, table) in lang.verbs.items():
        if slot in slots:
            joiner = _pick(rng, (",", "and", ", then")) if len(parts) > 1 else ""
            verb = _pick(rng, verbs) if verbs else ""
            said = f"{joiner} {verb} {' '.join(_pick(rng, table[slots[slot]]))}".replace("  ", " ")
            parts.append(said.strip())
    text = re.sub(r"\ba (?=[aeiou])", "an ", " ".join(parts).replace(" ,", ","))
    return text[0].upper() + text[1:] + "."


def _directions(words: dict[str, tuple[str, ...]]) -> dict[str, Phrases]:
    """Motion phrases: each direction's words, and diagonals as two of them joined by "and"."""
    out: dict[str, Phrases] = {d: tuple((w,) if " " not in w else tuple(w.split()) for w in ws)
                               for d, ws in words.items()}
    for v in ("up", "down"):
        for h in ("left", "right"):
            out[f"{v}-{h}"] = tuple(tuple(f"{a} and {b}".split()) for a in words[v] for b in words[h]) + tuple(
                tuple(f"{b} and {a}".split()) for a in words[v] for b in words[h])
    return out


_BALLS = ("red", "green", "blue")
_COLOURS_NOT_HERE = ("yellow", "orange", "purple", "pink", "black", "white", "grey", "gray", "brown", "cyan")
_OBJECTS_NOT_HERE = ("cube", "box", "block", "cup", "bottle", "robot", "arm", "puck", "pole", "car", "dog", "cat")
_HIT_TARGETS: dict[str, Phrases] = {
    "floor": (("floor",), ("ground",)), "ceiling": (("ceiling",), ("roof",)),
    "left wall": (("left", "wall"), ("wall", "on", "the", "left")),
    "right wall": (("right", "wall"), ("wall", "on", "the", "right")),
    **{f"{c} ball": ((c, "ball"), (c, "one")) for c in _BALLS},
}

BOUNCE = Language(
    scene="bounce",
    entities={c: ((c,), ("x", "height", "motion", "hits")) for c in _BALLS},
    noun="ball",
    place={
        "x": {"left": (("on", "the", "left"), ("at", "the", "left"), ("left",)),
              "centre": (("in", "the", "centre"), ("in", "the", "center"), ("centre",), ("center",)),
              "right": (("on", "the", "right"), ("at", "the", "right"), ("right",))},
        "height": {"low": (("low",), ("low", "down"), ("near", "the", "bottom")),
                   "middle": (("halfway", "up"), ("at", "mid", "height")),
                   "high": (("high",), ("high", "up"), ("near", "the", "top"))},
    },
    verbs={
        "motion": (("moving", "heading", "going", "travelling", "flying"), {
            **_directions({"left": ("left", "leftward", "to the left"), "right": ("right", "rightward", "to the right"),
                           "up": ("up", "upward"), "down": ("down", "downward")}),
            "still": (("slowly",), ("very", "slowly"), ("hardly", "at", "all")),
        }),
        "hits": (("hits", "strikes", "reaches", "meets"), {
            **{k: tuple(("the", *p) for p in v) for k, v in _HIT_TARGETS.items()},
        }),
    },
    subjects=("the {e} ball", "a {e} ball", "{e} ball", "the {e} one"),
    starts=("starts", "begins", "is", "sits"),
    absent={**{c: "its balls are red, green and blue" for c in _COLOURS_NOT_HERE},
            **{o: "it holds three balls (red, green and blue) in a box with a floor, a ceiling and two walls"
               for o in _OBJECTS_NOT_HERE}},
    filler=("the", "a", "it", "and", "then", "first", "one", "balls"),
)

PENDULUM = Language(
    scene="InvertedPendulum-v5",
    entities={"pole": (("pole", "pendulum", "stick"), ("tilt", "lean", "falls"))},
    noun="",
    place={
        "lean": {"barely": (("barely",), ("just",)), "slightly": (("slightly",), ("a", "bit"), ("a", "little"))},
        "tilt": {"left": (("tilted", "to", "the", "left"), ("leaning", "left"), ("tipped", "left")),
                 "right": (("tilted", "to", "the", "right"), ("leaning", "right"), ("tipped", "right"))},
    },
    verbs={"falls": ((), {"yes": (("falls",), ("falls", "over"), ("topples",)),
                          "no": (("stays", "up"), ("stays", "upright"), ("keeps", "balanced"))})},
    subjects=("the {e}", "a {e}"),
    starts=("starts", "begins", "is"),
    absent={**{o: "it is a pole on a cart" for o in ("ball", "balls", "target", "puck", "arm", "cube")},
            **{c: "its pole has one colour" for c in _BALLS + _COLOURS_NOT_HERE}},
    filler=("the", "a", "it", "is", "on", "cart"),
)

_REGIONS8 = {
    side: tuple((*pre, *words) for pre in ((), ("at", "the"), ("to", "the")) for words in said)
    for side, said in {"right": (("right",),), "left": (("left",),), "top": (("top",),), "bottom": (("bottom",),),
                       "top-right": (("top", "right"), ("upper", "right")),
                       "top-left": (("top", "left"), ("upper", "left")),
                       "bottom-right": (("bottom", "right"), ("lower", "right")),
                       "bottom-left": (("bottom", "left"), ("lower", "left"))}.items()
}

REACHER = Language(
    scene="Reacher-v5",
    entities={"target": (("target", "goal", "dot"), ("side", "reach")),
              "arm": (("arm",), ("bend",))},
    noun="",
    place={
        "side": _REGIONS8,
        "reach": {"near": (("near", "the", "base"), ("close", "in")), "far": (("far", "out"), ("far", "away"))},
        "bend": {"up": (("bent", "up"), ("tipped", "up")), "down": (("bent", "down"), ("tipped", "down"))},
    },
    verbs={},
    subjects=("the {e}",),
    starts=("is", "starts", "sits", "lies"),
    absent={**{o: "it is a two-link arm and a target" for o in ("ball", "balls", "puck", "pole", "cube", "box")},
            **{c: "its target is red and its arm is not coloured by prompt" for c in _BALLS + _COLOURS_NOT_HERE}},
    filler=("the", "a", "it", "is", "and", "at"),
)

PUSHER = Language(
    scene="Pusher-v5",
    entities={"puck": (("puck", "object", "cylinder"), ("reach", "side"))},
    noun="",
    place={
        "side": {"left": (("left", "of", "the", "goal"),), "right": (("right", "of", "the", "goal"),)},
        "reach": {"near": (("close",), ("nearby",)), "far": (("far", "away"), ("far", "off"))},
    },
    verbs={},
    subjects=("the {e}", "a {e}"),
    starts=("starts", "is", "sits", "lies"),
    absent={**{o: "it is an arm pushing a puck to a goal" for o in ("ball", "balls", "pole", "cube", "box")},
            **{c: "its puck has one colour" for c in _BALLS + _COLOURS_NOT_HERE}},
    filler=("the", "a", "it", "is", "and"),
)

LANGUAGES: dict[str, Language] = {lang.scene: lang for lang in (BOUNCE, PENDULUM, REACHER, PUSHER)}


def language(scene: str) -> Language:
    """The prompt language of `scene`."""
    if scene not in LANGUAGES:
        raise PromptError(f"scene {scene!r} has no prompt language; scenes with one: {', '.join(LANGUAGES)}")
    return LANGUAGES[scene]
