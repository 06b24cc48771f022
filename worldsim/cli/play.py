"""`worldsim play`: drive a world with the keyboard or a policy, the world beside MuJoCo, live; or
record a session headless to mp4.

    worldsim play --scene Reacher-v5                                   # keyboard, a pygame window
    worldsim play --scene InvertedPendulum-v5 --policy scripted        # watch a policy
    worldsim play --scene bounce --policy smooth --headless --steps 240 --out play.mp4

Both sides start from the initial state of MuJoCo's `reset(seed)` and take the same actions; the
policy acts on the world's state, so the world runs closed loop and MuJoCo shows what those actions
do for real. An episode ends when both sides have terminated or at the scene's time limit; each
side's return counts its rewards up to its own end. Headless, the next episode (the next seed) starts
there. Keys: arrows, WASD, IJKL, comma/period push action components 0-6 to their bounds; Space
pauses, R resets to the next seed, Esc or Q quits. The live window needs pygame (`pip install
'worldsim[play]'`) and a display; headless needs neither.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from worldsim.cli.common import (
    DEVICE_HELP,
    FORCE_FILE_HELP,
    PRECISION_HELP,
    positive_float,
    positive_int,
    world_frame_size,
)
from worldsim.core.extras import MissingExtra
from worldsim.core.precision import PRECISIONS
from worldsim.core.video import check_video_target, side_by_side, write_video
from worldsim.eval.paired_session import PairedSession
from worldsim.eval.policy_eval import BUILT_IN, policy_from_spec

# (plus, minus) key names for each action component, in order.
KEY_PAIRS = (("right", "left"), ("up", "down"), ("d", "a"), ("w", "s"), ("l", "j"), ("i", "k"), (".", ","))


def keyboard_action(pressed: set[str], low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The action for the keys held down: component i at its upper bound for its plus key, its lower
    bound for its minus key, 0 (or mid-range) otherwise."""
    a = (low + high) / 2
    for i, (plus, minus) in enumerate(KEY_PAIRS[: len(low)]):
        if plus in pressed and minus not in pressed:
            a[i] = high[i]
        elif minus in pressed and plus not in pressed:
            a[i] = low[i]
    return a


class Driver:
    """Who chooses the actions: a policy on the world's state, or the keyboard when there is none."""

    def __init__(self, spec: str | None, session: PairedSession, policy=None):
        """`policy`: the policy `spec` names, when the caller has made it already."""
        self.session = session
        self.policy = policy if policy is not None or spec is None else policy_from_spec(spec, session.real.name)

    def reset(self, seed: int) -> None:
        """Start an episode of `seed` for both sides and the policy: a seeded policy (noise, the scripted
        controller's phase) starts again from that seed, as `worldsim eval policies` would run it."""
        self.session.reset(seed)
        if self.policy is not None and hasattr(self.policy, "seed"):
            self.policy.seed = seed
        if self.policy is not None and callable(getattr(self.policy, "reset", None)):
            self.policy.reset(self.session.action_space)

    def act(self, pressed: set[str]) -> np.ndarray:
        space = self.session.action_space
        if self.policy is None:
            return keyboard_action(pressed, space.low.astype(np.float64), space.high.astype(np.float64))
        return np.asarray(self.policy(self.session.world_state[None]), dtype=np.float64)[0]


def _side_text(ret: float, end: int | None, session: PairedSession) -> str:
    if end is not None:
        return f"{ret:.4g} (terminated at step {end})"
    if session.t >= session.time_limit:
        return f"{ret:.4g} (truncated at step {session.time_limit})"
    return f"{ret:.4g} (unfinished at step {session.t})"


def _episode_text(seed: int, session: PairedSession) -> str:
    return (f"  seed {seed}: world {_side_text(session.returns['world'], session.world_end, session)}, "
            f"MuJoCo {_side_text(session.returns['real'], session.real_end, session)}")


def run_headless(args: argparse.Namespace, session: PairedSession, policy=None) -> int:
    """Record `--steps` steps; an episode that ends starts the next seed's, as `rollout --episodes` does."""
    driver = Driver(args.policy, session, policy)
    seed, episodes = args.seed, []

    def frame() -> np.ndarray:
        model, real = session.frames()
        return side_by_side(model[None], real[None])[0]

    driver.reset(seed)
    frames = [frame()]
    for step in range(1, args.steps + 1):
        session.step(driver.act(set()))
        frames.append(frame())
        if session.episode_over and step < args.steps:
            episodes.append(_episode_text(seed, session))
            seed += 1
            driver.reset(seed)
            frames.append(frame())
    episodes.append(_episode_text(seed, session))
    out = write_video(args.out, np.stack(frames), fps=args.fps or 1.0 / session.real.dt, scale=args.scale)
    print(f"wrote {out}: {args.steps} steps of {session.real.name} in {len(episodes)} episode(s) (world | MuJoCo | "
          f"difference), policy {args.policy}; returns:")
    print("\n".join(episodes))
    return 0


def check_display(pygame=None) -> None:
    """Refuse at once a live window nobody would see: no display in the environment, or SDL about to
    draw offscreen, where the session would run for ever invisibly.

    Raises:
        ValueError: saying so, and pointing to --headless.
    """
    hint = "record the session instead: worldsim play --headless --policy smooth --out play.mp4"
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")) and \
            not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ValueError(f"no display for the live window (DISPLAY and WAYLAND_DISPLAY are unset); {hint}")
    if driver in ("offscreen", "dummy"):
        raise ValueError(f"SDL_VIDEODRIVER={driver} draws the live window nowhere; {hint}")
    if pygame is None:
        return
    try:
        pygame.display.init()
        driver = pygame.display.get_driver()
    except pygame.error as exc:
        raise ValueError(f"no display for the live window ({exc}); {hint}") from None
    finally:
        pygame.display.quit()
    if driver in ("offscreen", "dummy"):
        raise ValueError(f"SDL found no display (it chose its {driver} driver); {hint}")


def run_play(args: argparse.Namespace) -> int:
    # Everything that can fail on the arguments fails before the world loads.
    if args.headless and args.out is None:
        raise ValueError("--headless records to --out, an .mp4 path; pass --out")
    if args.headless and args.policy is None:
        raise ValueError("--headless has no keyboard: pass --policy (e.g. smooth or scripted)")
    pygame = None
    if args.headless:
        side = world_frame_size(args.scene, args.checkpoint)
        check_video_target(args.out, force=args.force, fps=args.fps, scale=args.scale,
                           frame_size=None if side is None else (side, 3 * side))
    else:
        check_display()  # before pygame: without a display the extra would not help
        pygame = _pygame()
        check_display(pygame)
    policy = None if args.policy is None else policy_from_spec(args.policy, args.scene)  # an agent loads here
    session = PairedSession(args.scene, args.checkpoint, args.device, precision=args.precision)
    try:
        if args.headless:
            return run_headless(args, session, policy)
        PlayWindow(pygame, session, Driver(args.policy, session, policy), args).run()
        return 0
    finally:
        session.close()


def _pygame():
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame  # optional dependency: the `play` extra
    except ImportError as exc:
        raise MissingExtra("the live window (or use --headless)", "pygame", "play") from exc
    return pygame


class PlayWindow:
    """The live window: [world | MuJoCo] scaled up, a status line, the keyboard read every frame.

    `run` closes the session before pygame quits: SDL may share the process's EGL display with
    MuJoCo's renderers and terminates it on quit, after which their contexts cannot be freed."""

    def __init__(self, pygame, session: PairedSession, driver: Driver, args: argparse.Namespace):
        self.pg, self.session, self.driver, self.args = pygame, session, driver, args
        self.seed, self.paused = args.seed, False
        self.fps = args.fps or 1.0 / session.real.dt
        model, _ = session.frames(real=False)
        self.h, self.w = model.shape[0] * args.scale, model.shape[1] * args.scale

    def _pressed(self) -> set[str]:
        keys = self.pg.key.get_pressed()
        return {name for pair in KEY_PAIRS for name in pair if keys[self.pg.key.key_code(name)]}

    def _draw(self, screen, font) -> None:
        model, real = self.session.frames()
        for i, frame in enumerate((model, real)):
            big = frame.repeat(self.args.scale, 0).repeat(self.args.scale, 1)
            screen.blit(self.pg.surfarray.make_surface(big.swapaxes(0, 1)), (i * self.w, 0))
        s = self.session
        ends = "".join(f"  {who} ended at {t}" for who, t in (("MuJoCo", s.real_end), ("world", s.world_end)) if t)
        over = "  [episode over: R for the next]" if s.episode_over else ""
        text = (f"world | MuJoCo   seed {self.seed}  step {s.t}  return {s.returns['world']:.3g} | "
                f"{s.returns['real']:.3g}{ends}{over}{'  [paused]' if self.paused else ''}")
        screen.fill((0, 0, 0), (0, self.h, 2 * self.w, 24))
        screen.blit(font.render(text, True, (230, 230, 230)), (6, self.h + 4))
        self.pg.display.flip()

    def run(self, max_frames: int | None = None) -> None:
        pg = self.pg
        pg.init()
        try:
            screen = pg.display.set_mode((2 * self.w, self.h + 24))
            pg.display.set_caption(f"worldsim play: {self.session.real.name}")
            font, clock = pg.font.Font(None, 20), pg.time.Clock()
            self.driver.reset(self.seed)
            frame = 0
            while max_frames is None or frame < max_frames:
                frame += 1
                for event in pg.event.get():
                    if event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key in (pg.K_ESCAPE, pg.K_q)):
                        return
                    if event.type == pg.KEYDOWN and event.key == pg.K_SPACE:
                        self.paused = not self.paused
                    if event.type == pg.KEYDOWN and event.key == pg.K_r:
                        self.seed += 1
                        self.driver.reset(self.seed)
                if not self.paused and not self.session.episode_over and self.session.t < self.args.steps:
                    self.session.step(self.driver.act(self._pressed()))
                self._draw(screen, font)
                clock.tick(self.fps)
        finally:
            self.session.close()
            pg.quit()


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("play", help="drive a world live, beside MuJoCo (keyboard or policy), or record headless",
                       description=__doc__.split("\n\n")[0].replace("`", ""))
    s.add_argument("--scene", default="Reacher-v5", help="scene name with a shipped world (see `worldsim models`)")
    s.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    s.add_argument("--policy", default=None, help=f"a policy instead of the keyboard: {BUILT_IN}")
    s.add_argument("--seed", type=int, default=0, help="the first episode's seed (R moves to the next)")
    s.add_argument("--steps", type=positive_int, default=240,
                   help="steps to record with --headless (episodes one after another, seeds SEED, SEED + 1, ...); "
                        "live: steps per episode at most")
    s.add_argument("--headless", action="store_true", help="no window: record --steps steps to --out")
    s.add_argument("--out", default=None, help="the .mp4 that --headless writes (an existing file is refused "
                                               "without --force)")
    s.add_argument("--force", action="store_true", help=FORCE_FILE_HELP)
    s.add_argument("--fps", type=positive_float, default=None, help="frame rate (default: the scene's, 1 / dt)")
    s.add_argument("--scale", type=positive_int, default=6, help="repeat each pixel this many times")
    s.add_argument("--device", default="auto", help=DEVICE_HELP)
    s.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    s.set_defaults(func=run_play)
