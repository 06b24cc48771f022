import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from worldsim.envs import make_scene
from worldsim.eval.metrics import psnr
from worldsim.model.decoders import ConvDecoder, narrowed
from worldsim.model.fsq import FSQ
from worldsim.model.tokenizer import Tokenizer, TokenizerConfig

SMALL = TokenizerConfig(channels=(8, 16, 16), levels=(5, 4, 3), res_blocks=1, groups=4)


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return Tokenizer(SMALL).eval()


def frames(*lead, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (*lead, 64, 64, 3), dtype=torch.uint8, generator=g)


def test_fsq_codes_round_trip_and_cover_the_codebook():
    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(20000, 4) * 1.5
    q, codes = fsq(z)
    assert codes.dtype == torch.long and int(codes.min()) >= 0 and int(codes.max()) < 1000
    assert torch.allclose(fsq.codes_to_latents(codes), q)
    assert q.abs().max() <= 1.0
    assert codes.unique().numel() > 700
    all_codes = torch.arange(1000)
    q_all = fsq.codes_to_latents(all_codes)
    assert q_all.unique(dim=0).shape[0] == 1000  # every code is a distinct latent


def test_fsq_passes_gradients_straight_through():
    fsq = FSQ((8, 5, 5, 5))
    z = torch.randn(16, 4, requires_grad=True)
    q, _ = fsq(z)
    q.sum().backward()
    assert z.grad is not None and (z.grad != 0).all()


def test_fsq_rejects_bad_levels_and_codes():
    with pytest.raises(ValueError, match="levels must be ints >= 2"):
        FSQ((8, 1))
    fsq = FSQ((4, 4))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 16\)"):
        fsq.codes_to_latents(torch.tensor([16]))
    with pytest.raises(TypeError, match="integer"):
        fsq.codes_to_latents(torch.tensor([1.0]))


def test_shapes_and_dtypes(tok):
    x = frames(2, 3)
    codes = tok.encode(x)
    assert codes.shape == (2, 3, 8, 8) and codes.dtype == torch.long
    assert int(codes.max()) < SMALL.codebook_size
    rec = tok.decode(codes)
    assert rec.shape == (2, 3, 64, 64, 3) and rec.dtype == torch.uint8
    flat = tok.encode(x.reshape(6, 64, 64, 3))
    assert torch.equal(flat.reshape(2, 3, 8, 8), codes)
    assert tok.encode(x.numpy()).shape == codes.shape  # numpy in, same codes out


def test_decode_then_encode_is_a_fixed_point_for_most_tokens(tok):
    codes = tok.encode(frames(4))
    again = tok.encode(tok.decode(codes))
    assert again.shape == codes.shape


def test_determinism_and_batch_independence(tok):
    x = frames(5)
    a = tok.encode(x, batch_size=5)
    b = tok.encode(x, batch_size=2)
    assert torch.equal(a, b)
    assert torch.equal(tok.decode(a), tok.decode(a))


def test_empty_batch(tok):
    assert tok.encode(torch.zeros(0, 64, 64, 3, dtype=torch.uint8)).shape == (0, 8, 8)


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (torch.zeros(2, 64, 64, 3), TypeError, "uint8"),
        (torch.zeros(2, 64, 64, 3, dtype=torch.int64), TypeError, "uint8"),
        (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), ValueError, r"\[N, 64, 64, 3\]"),
        (torch.zeros(2, 32, 32, 3, dtype=torch.uint8), ValueError, r"got \(2, 32, 32, 3\)"),
        (torch.zeros(64, 64, 3, dtype=torch.uint8), ValueError, "got"),
        ([[1, 2]], TypeError, "torch.Tensor or numpy"),
    ],
)
def test_bad_frames(tok, bad, err, match):
    with pytest.raises(err, match=match):
        tok.encode(bad)


def test_bad_tokens(tok):
    with pytest.raises(ValueError, match=r"tokens must be \[B, T, 8, 8\]"):
        tok.decode(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"codes must be in \[0, 60\)"):
        tok.decode(torch.full((1, 8, 8), 60))


def test_training_step_learns(tmp_path):
    torch.manual_seed(0)
    model = Tokenizer(SMALL)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    # A few distinct flat-coloured frames with a square: easy to fit.
    x = torch.zeros(8, 64, 64, 3, dtype=torch.uint8)
    for i in range(8):
        x[i, :, :] = torch.tensor([30 * i, 200 - 20 * i, 100])
        x[i, 8 * i : 8 * i + 12, 20:32] = 255
    first = None
    for _ in range(60):
        loss, logs = model(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else logs["loss"]
    assert logs["loss"] < 0.5 * first
    assert {"l1", "l2", "grad", "psnr", "codes_in_batch"} <= set(logs)


def test_save_and_from_pretrained(tmp_path, tok):
    tok.save(tmp_path / "tk")
    again = Tokenizer.from_pretrained(tmp_path / "tk")
    x = frames(3)
    assert torch.equal(again.encode(x), tok.encode(x))
    with pytest.raises(ValueError, match="neither a checkpoint directory nor a scene"):
        Tokenizer.from_pretrained("no-such-scene")


def test_config_validation():
    with pytest.raises(ValueError, match="image_size must be a positive multiple of 16, got 60"):
        TokenizerConfig(image_size=60)
    with pytest.raises(ValueError, match="channels must be 3 positive multiples of groups=8"):
        TokenizerConfig(channels=(8, 12, 16))
    assert TokenizerConfig.from_json(TokenizerConfig().to_json()) == TokenizerConfig()


def test_decoder_budget():
    """A decoder at (16, 32, 56) costs at most a quarter of one at the encoder's widths (247 MFLOP a
    frame, the default); both map latents [N, d, 8, 8] to [N, 3, 64, 64]."""
    q = torch.zeros(2, 4, 8, 8)
    flops = {}
    for widths in ((16, 32, 56), None):
        tok = Tokenizer(TokenizerConfig(decoder_channels=widths))
        with FlopCounterMode(display=False) as counter:
            tok.decoder(q[:1])
        flops[widths] = counter.get_total_flops() / 1e6
        assert tuple(tok.decoder(q).shape) == (2, 3, 64, 64)
    assert TokenizerConfig().decoder_channels is None
    assert flops[(16, 32, 56)] <= 62 and flops[None] > 240


def test_decoder_widths_config():
    """Configs without `decoder_channels` (all saved before it existed) have the encoder's widths."""
    old = {k: v for k, v in TokenizerConfig().to_dict().items() if k != "decoder_channels"}
    assert TokenizerConfig.from_dict(old) == TokenizerConfig()
    assert TokenizerConfig().decoder_widths == (32, 64, 128)
    narrow = TokenizerConfig(decoder_channels=(16, 32, 56))
    assert narrow.decoder_widths == (16, 32, 56) and TokenizerConfig.from_json(narrow.to_json()) == narrow
    assert narrow.encoder_matches(TokenizerConfig()) and not narrow.encoder_matches(TokenizerConfig(levels=(5, 5)))
    with pytest.raises(ValueError, match="decoder_channels must be None or 3 positive multiples of groups=8"):
        TokenizerConfig(decoder_channels=(12, 8, 8))


def test_narrowed_keeps_the_most_active_channels():
    """A decoder narrowed to the wide one's own widths is the wide one; a narrower one keeps, in each layer,
    the channels the wide one uses most, with the weights between them."""
    torch.manual_seed(0)
    wide = ConvDecoder(4, (16, 32, 48), 1, 8)
    q = torch.rand(6, 4, 8, 8) * 2 - 1
    same = narrowed(wide, (16, 32, 48), 1, 8, q)
    torch.testing.assert_close(same(q), wide(q))
    small = narrowed(wide, (8, 16, 24), 1, 8, q)
    assert tuple(small(q).shape) == (6, 3, 64, 64)
    stem = wide.net[0](q).abs().mean((0, 2, 3))
    kept = torch.sort(torch.topk(stem, 24).indices).values
    torch.testing.assert_close(small.net[0].weight, wide.net[0].weight[kept])
    with pytest.raises(ValueError, match="exceeds the wide decoder's"):
        narrowed(wide, (16, 32, 64), 1, 8, q)


@pytest.mark.parametrize("scene", ["InvertedPendulum-v5", "Reacher-v5", "Pusher-v5", "bounce"])
def test_every_scene_has_a_shipped_tokenizer_that_reconstructs_its_frames(scene):
    """The shipped weights load offline by scene name, in fp32, and a real reset frame of the scene
    comes back above 30 dB (the held-out figure, over whole episodes, is >= 32 dB: README)."""
    tok = Tokenizer.from_pretrained(scene)
    assert all(p.dtype == torch.float32 for p in tok.parameters())
    sc = make_scene(scene)
    try:
        sc.reset(seed=1000)
        frame = torch.from_numpy(np.ascontiguousarray(sc.render()))[None, None]
    finally:
        sc.close()
    rec = tok.decode(tok.encode(frame))
    assert float(psnr(rec.numpy(), frame.numpy()).min()) > 30


def test_decode_in_bf16_runs_a_copy_that_follows_the_decoder():
    """Under `set_decoder_dtype(bfloat16)` `decode` runs a bf16 copy of the decoder, close to fp32's frames
    and remade when the decoder's weights change (a training step moves them in place)."""
    torch.manual_seed(0)
    tok = Tokenizer(SMALL).eval()
    codes = torch.randint(0, tok.cfg.codebook_size, (6, tok.cfg.grid, tok.cfg.grid),
                          generator=torch.Generator().manual_seed(0))
    assert tok.inference_decoder() is tok.decoder
    fp32 = tok.decode(codes)
    tok.set_decoder_dtype(torch.bfloat16)
    assert tok.inference_decoder().net[0].weight.dtype == torch.bfloat16
    assert (tok.decode(codes).float() - fp32.float()).abs().mean() < 3
    with torch.no_grad():
        tok.decoder.net[-1].bias.add_(0.5)
    tok.set_decoder_dtype(torch.float32)
    moved = tok.decode(codes)
    tok.set_decoder_dtype(torch.bfloat16)
    assert (tok.decode(codes).float() - moved.float()).abs().mean() < 3
    assert (moved.float() - fp32.float()).abs().mean() > 10
