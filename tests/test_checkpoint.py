import json
from dataclasses import dataclass

import pytest
import torch

import worldsim.core.checkpoint as ckmod
from worldsim.core.checkpoint import load_checkpoint, load_state_into, save_checkpoint
from worldsim.core.config import ConfigBase


@dataclass(frozen=True)
class NetConfig(ConfigBase):
    width: int = 8


def net(cfg: NetConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, cfg.width), torch.nn.ReLU(), torch.nn.Linear(cfg.width, 2))


def test_round_trip(tmp_path):
    cfg = NetConfig(width=8)
    m = net(cfg)
    save_checkpoint(tmp_path / "ck", m, cfg, kind="test", extra={"step": 3})
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["format_version"] == 1 and "worldsim_version" in meta and meta["config"] == {"width": 8}
    ck = load_checkpoint(tmp_path / "ck", kind="test", config_cls=NetConfig)
    assert ck.config == cfg and ck.extra == {"step": 3}
    m2 = net(NetConfig(width=8))
    for p in m2.parameters():
        torch.nn.init.zeros_(p)
    load_state_into(m2, ck.tensors)
    for a, b in zip(m.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)


def test_fp16_storage_loads_into_fp32(tmp_path):
    m = net(NetConfig())
    save_checkpoint(tmp_path / "ck", m, NetConfig(), kind="test", dtype=torch.float16)
    ck = load_checkpoint(tmp_path / "ck")
    assert all(t.dtype == torch.float16 for t in ck.tensors.values())
    m2 = net(NetConfig())
    load_state_into(m2, ck.tensors)
    assert m2[0].weight.dtype == torch.float32
    assert torch.allclose(m2[0].weight, m[0].weight, atol=1e-3)
    # keep_fp32 exempts named tensors (and name prefixes) from the cast, exactly.
    save_checkpoint(tmp_path / "mixed", m, NetConfig(), kind="test", dtype=torch.float16, keep_fp32=("0.",))
    mixed = load_checkpoint(tmp_path / "mixed").tensors
    assert {k: v.dtype for k, v in mixed.items() if k.startswith("0.")} == {"0.weight": torch.float32,
                                                                           "0.bias": torch.float32}
    assert torch.equal(mixed["0.weight"], m[0].weight) and mixed["2.weight"].dtype == torch.float16


def test_checkpoint_from_a_different_config_names_the_tensors(tmp_path):
    save_checkpoint(tmp_path / "ck", net(NetConfig(width=8)), NetConfig(width=8), kind="test")
    ck = load_checkpoint(tmp_path / "ck")
    with pytest.raises(ValueError, match=r"mismatched shapes \[0.bias: checkpoint \(8,\) vs model \(16,\)"):
        load_state_into(net(NetConfig(width=16)), ck.tensors, source="ck")


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    m = net(NetConfig())
    sd = m.state_dict()
    sd.pop("2.bias")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing tensors \['2.bias'\].*unexpected tensors \['extra.weight'\]"):
        load_state_into(m, sd)


def test_truncated_safetensors_is_refused(tmp_path):
    save_checkpoint(tmp_path / "ck", net(NetConfig()), NetConfig(), kind="test")
    f = tmp_path / "ck" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"model.safetensors: 524 bytes, config.json says 544 \(truncated or corrupt\)"):
        load_checkpoint(tmp_path / "ck")


def test_pickles_are_refused(tmp_path):
    torch.save(net(NetConfig()).state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="never pickles"):
        load_checkpoint(tmp_path / "model.pt")
    d = tmp_path / "ck"
    d.mkdir()
    torch.save({}, d / "model.pt")
    (d / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"expected model.safetensors \(safetensors\), found \['config.json', 'model.pt'\]"):
        load_checkpoint(d)


def test_wrong_kind_and_bad_config(tmp_path):
    save_checkpoint(tmp_path / "ck", net(NetConfig()), NetConfig(), kind="tokenizer")
    with pytest.raises(ValueError, match="expected a 'dynamics' checkpoint, got 'tokenizer'"):
        load_checkpoint(tmp_path / "ck", kind="dynamics")
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    meta["config"]["depth"] = 3
    (tmp_path / "ck" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"bad config: NetConfig: unknown key\(s\) \['depth'\]"):
        load_checkpoint(tmp_path / "ck", config_cls=NetConfig)


def test_a_failed_save_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ck", net(NetConfig()), NetConfig(width=8), kind="test")

    def boom(*a, **k):
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr(ckmod, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ck", net(NetConfig(width=16)), NetConfig(width=16), kind="test")
    assert load_checkpoint(tmp_path / "ck", config_cls=NetConfig).config.width == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_overwrite_replaces_whole(tmp_path):
    save_checkpoint(tmp_path / "ck", net(NetConfig(width=8)), NetConfig(width=8), kind="test")
    save_checkpoint(tmp_path / "ck", net(NetConfig(width=16)), NetConfig(width=16), kind="test")
    assert load_checkpoint(tmp_path / "ck", config_cls=NetConfig).config.width == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
