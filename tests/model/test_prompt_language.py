"""The prompt language: every caption reads back to the slots it was made from; bad prompts get one
clear error naming what is wrong."""

import numpy as np
import pytest

from worldsim.model.prompt_language import LANGUAGES, PromptError, language, parse, phrase, words_of


@pytest.mark.parametrize("scene", sorted(LANGUAGES))
def test_every_caption_reads_back_to_its_slots(scene):
    lang = language(scene)
    rng = np.random.default_rng(0)
    for _ in range(1500):
        slots = {s: str(rng.choice(lang.values(s))) for s in lang.slots if rng.random() < 0.5}
        text = phrase(lang, slots, rng)
        assert parse(lang, text) == slots, text


def test_a_hand_written_prompt_is_read():
    text = "The red ball starts high on the left, moving down and to the right, and hits the floor first. The blue one is low."
    assert parse(language("bounce"), text) == {"red.height": "high", "red.x": "left", "red.motion": "down-right",
                                               "red.hits": "floor", "blue.height": "low"}
    # "it" keeps the entity of the sentence before; a target that names a ball is not a new subject
    assert parse(language("bounce"), "A green ball is in the centre. It strikes the red ball.") == {
        "green.x": "centre", "green.hits": "red ball"}


def test_the_empty_prompt_says_nothing():
    assert parse(language("bounce"), "") == {}
    assert parse(language("bounce"), "  . ") == {}


@pytest.mark.parametrize("text, message", [
    ("the red ball zooms and wobbles", "'zooms', 'wobbles'"),
    ("a yellow ball bounces", "bounce has no yellow: its balls are red, green and blue"),
    ("the cube starts left", "bounce has no cube"),
    ("the red ball starts left and right", "contradicts itself: the red ball's x is both 'left' and 'right'"),
    ("The red ball is low. The red ball is high.", "both 'low' and 'high'"),
    ("moving left", "before the prompt names what it is about"),
    ("the red ball starts left #3", "characters no prompt uses: # 3"),
])
def test_bad_prompts_are_refused_with_what_is_wrong(text, message):
    with pytest.raises(PromptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(language("bounce"), text)


def test_other_scenes_refuse_what_they_do_not_have():
    with pytest.raises(PromptError, match="InvertedPendulum-v5 has no ball"):
        parse(language("InvertedPendulum-v5"), "the ball falls")
    with pytest.raises(PromptError, match="cannot be said of the arm"):
        parse(language("Reacher-v5"), "the arm is far out")
    with pytest.raises(PromptError, match="no prompt language"):
        language("Ant-v5")
    with pytest.raises(PromptError, match="a prompt is a string"):
        words_of(3)


def test_words_keep_sentence_ends():
    assert words_of("Red ball, LEFT; it falls!") == ["red", "ball", "left", ".", "it", "falls", "."]
    assert set(words_of(phrase(language("bounce"), {"red.x": "left"}, np.random.default_rng(1)))) <= set(
        language("bounce").vocabulary())


def test_an_is_read_as_a_and_captions_say_it_before_a_vowel():
    assert words_of("An object starts left of the goal.") == words_of("A object starts left of the goal.")
    assert parse(language("Pusher-v5"), "An object starts left of the goal.") == {"puck.side": "left"}
    rng = np.random.default_rng(0)
    said = [phrase(language("Pusher-v5"), {"puck.side": "left"}, rng) for _ in range(40)]
    assert any(t.startswith("An object") for t in said) and not any("a object" in t.lower() for t in said)
