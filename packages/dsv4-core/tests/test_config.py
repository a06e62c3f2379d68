import json

import pytest

from dsv4_core import FLASH, PRO, SMALL, TINY, from_hf_config, get_preset, shard_heads
from dsv4_core.config import AttentionConfig, kind_for_ratio


def test_flash_public_values():
    assert (FLASH.hidden_size, FLASH.num_heads, FLASH.head_dim, FLASH.rope_dim) == (4096, 64, 512, 64)
    assert (FLASH.q_lora_rank, FLASH.o_lora_rank, FLASH.o_groups, FLASH.window) == (1024, 1024, 8, 128)
    assert (FLASH.index_num_heads, FLASH.index_head_dim, FLASH.index_topk) == (64, 128, 512)
    assert FLASH.max_position_embeddings == 1_048_576 and FLASH.eps == 1e-6
    assert (FLASH.rope_theta, FLASH.compress_rope_theta, FLASH.rope_factor) == (10000.0, 160000.0, 16.0)
    assert (FLASH.original_max_position_embeddings, FLASH.beta_fast, FLASH.beta_slow) == (65536, 32.0, 1.0)
    assert FLASH.group_in_dim == 4096 and FLASH.softmax_scale == pytest.approx(512 ** -0.5)


def test_pro_public_values():
    assert (PRO.hidden_size, PRO.num_heads, PRO.q_lora_rank, PRO.o_groups, PRO.index_topk) == (7168, 128, 1536, 16, 1024)
    assert PRO.group_in_dim == 4096


def test_layer_schedule_flash():
    assert FLASH.num_layers == 44
    assert [FLASH.layer_kind(i) for i in (0, 1, 2, 3, 42, 43)] == ["swa", "swa", "csa", "hca", "csa", "swa"]
    assert sum(FLASH.layer_kind(i) == "csa" for i in range(43)) == 21
    assert sum(FLASH.layer_kind(i) == "hca" for i in range(43)) == 20


def test_layer_schedule_pro():
    assert PRO.num_layers == 62
    assert [PRO.layer_kind(i) for i in (0, 1, 2, 3, 60, 61)] == ["hca", "hca", "csa", "hca", "csa", "swa"]
    with pytest.raises(IndexError, match="layer must be in"):
        PRO.layer_kind(62)


def test_small_presets_keep_head_geometry():
    for c in (SMALL, TINY):
        assert (c.head_dim, c.rope_dim, c.window) == (512, 64, 128)
        assert c.hidden_size < FLASH.hidden_size and c.num_heads < FLASH.num_heads
        assert c.num_heads % c.o_groups == 0
    assert get_preset("tiny") is TINY
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("nope")


@pytest.mark.parametrize("tp,heads,groups", [(1, 64, 8), (2, 32, 4), (4, 16, 2), (8, 8, 1)])
def test_shard_heads_flash(tp, heads, groups):
    c = shard_heads(FLASH, tp)
    assert (c.num_heads, c.o_groups, c.heads_per_group, c.tp_size) == (heads, groups, 8, tp)
    assert c.hidden_size == FLASH.hidden_size


def test_shard_heads_pro_down_to_16():
    assert shard_heads(PRO, 8).num_heads == 16
    with pytest.raises(ValueError, match="tp=3 must divide"):
        shard_heads(FLASH, 3)


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="rope_dim must be even"):
        FLASH.replace(rope_dim=63)
    with pytest.raises(ValueError, match="multiple of o_groups"):
        FLASH.replace(o_groups=7)
    with pytest.raises(ValueError, match="compress_ratios"):
        FLASH.replace(compress_ratios=(0, 8))
    with pytest.raises(ValueError, match="compress_ratio must be"):
        kind_for_ratio(2)


def _hf_flash() -> dict:
    return {
        "model_type": "deepseek_v4", "hidden_size": 4096, "num_attention_heads": 64, "head_dim": 512,
        "qk_rope_head_dim": 64, "q_lora_rank": 1024, "o_lora_rank": 1024, "o_groups": 8,
        "sliding_window": 128, "index_n_heads": 64, "index_head_dim": 128, "index_topk": 512,
        "compress_ratios": list(FLASH.compress_ratios), "rope_theta": 10000, "compress_rope_theta": 160000,
        "rope_scaling": {"type": "yarn", "factor": 16, "original_max_position_embeddings": 65536,
                         "beta_fast": 32, "beta_slow": 1},
        "max_position_embeddings": 1048576, "rms_norm_eps": 1e-6,
    }


def test_from_hf_config_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(_hf_flash()))
    c = from_hf_config(tmp_path, name="flash")
    assert c == FLASH
    assert from_hf_config(tmp_path / "config.json", name="flash") == FLASH


def test_from_hf_config_missing_key():
    d = _hf_flash()
    del d["o_groups"]
    with pytest.raises(KeyError, match="o_groups"):
        from_hf_config(d)


def test_config_is_frozen():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        FLASH.num_heads = 3  # type: ignore[misc]
    assert isinstance(FLASH, AttentionConfig)
