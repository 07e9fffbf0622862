"""The sparse checkpoint: bit-exact round trip, dtype and shape kept, the smaller encoding chosen."""

from __future__ import annotations

import pytest
import torch

from chitalab.export.sparse_format import (
    ENCODINGS,
    SparseFormatError,
    choose_encoding,
    decode_tensor,
    dense_checkpoint_bytes,
    encode_tensor,
    encoded_sizes,
    from_bytes,
    load_sparse,
    pack_bits,
    save_sparse,
    to_bytes,
    unpack_bits,
)
from chitalab.models import resnet20


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


def sparse_tensor(shape, sparsity, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=gen)
    t[torch.rand(*shape, generator=gen) < sparsity] = 0
    return t.to(dtype)


def test_every_encoding_round_trips_bit_exactly_with_dtype_and_shape():
    tensors = [
        sparse_tensor((40, 784), 0.9),
        sparse_tensor((16, 3, 3, 3), 0.7, torch.float64),
        sparse_tensor((8, 12), 0.5, torch.bfloat16),
        sparse_tensor((33,), 0.8, torch.float16),
        torch.tensor(7),  # num_batches_tracked: a 0-d int64
        torch.tensor([-0.0, 0.0, float("nan"), float("inf"), 1.5]),  # -0.0 and NaN keep their bits
        torch.tensor([True, False, True]),
        torch.zeros(0, 5),
        torch.zeros(4, 4),
    ]
    for t in tensors:
        for encoding in ENCODINGS:
            entry, parts = encode_tensor(t, encoding)
            assert same_bits(decode_tensor(entry, parts), t), (t.dtype, t.shape, encoding)


def test_state_dict_round_trip_includes_unpruned_tensors(tmp_path):
    net = resnet20()
    state = net.state_dict()
    with torch.no_grad():
        for name, value in state.items():
            if name.endswith("conv1.weight") or name == "fc.weight":
                value[torch.rand_like(value) < 0.9] = 0
        state["bn1.running_mean"].normal_()
    info = save_sparse(state, tmp_path / "m.sparse")
    back = load_sparse(tmp_path / "m.sparse")
    assert list(back) == list(state)
    assert all(same_bits(back[k], v) for k, v in state.items())
    assert info.bytes == (tmp_path / "m.sparse").stat().st_size
    assert not (tmp_path / "m.sparse.part").exists()
    assert info.encodings["dense"] > 0 and info.encodings["bitmask"] > 0  # BN buffers dense, pruned convs bitmask
    net.load_state_dict(back)  # loads into the model as a plain state dict


def test_the_smaller_encoding_is_chosen():
    nearly_dense = sparse_tensor((64, 64), 0.01)
    half = sparse_tensor((64, 64), 0.5)
    ninety = sparse_tensor((64, 64), 0.9)
    very = sparse_tensor((64, 1000), 0.99)
    assert choose_encoding(nearly_dense) == "dense"  # 4 B a weight against 1/8 + 0.99 · 4 B
    assert choose_encoding(half) == "bitmask"  # 1/8 + 0.5 · 4 = 2.125 B a weight
    assert choose_encoding(ninety) == "bitmask"  # n/8 + 0.4n < 0.1n · (1 + 4) + rows
    assert choose_encoding(very) == "csr"  # 0.01n · (2 + 4) < n/8
    for t in (nearly_dense, half, ninety, very):
        sizes = encoded_sizes(t)
        assert sizes[choose_encoding(t)] == min(sizes.values())
        assert sizes["dense"] == t.numel() * 4
    nnz = int((ninety != 0).sum())
    assert encoded_sizes(ninety)["bitmask"] == 64 * 64 // 8 + 4 * nnz
    assert encoded_sizes(ninety)["csr"] == 65 * 2 + nnz * 1 + 4 * nnz  # 64 columns fit uint8; nnz > 255 needs int16


def test_a_dense_tensor_costs_its_bytes_plus_the_header():
    t = torch.randn(64, 64)
    assert len(to_bytes({"w": t})) < t.numel() * 4 + 200


def test_sparse_file_is_much_smaller_than_torch_save_at_90_percent():
    state = {"w": sparse_tensor((512, 512), 0.9), "b": torch.randn(512)}
    assert len(to_bytes(state)) < 0.15 * dense_checkpoint_bytes(state)


def test_negative_zeros_cost_one_bit_per_zero_and_only_when_present():
    t = sparse_tensor((64, 64), 0.9)
    flipped = t.clone()
    flipped[(t == 0) & (torch.rand(64, 64) < 0.5)] = -0.0  # what w * mask leaves for negative w
    plain, signed = encoded_sizes(t), encoded_sizes(flipped)
    zeros = int((t == 0).sum())
    assert signed["bitmask"] - plain["bitmask"] == -(-zeros // 8)
    for encoding in ("bitmask", "csr"):
        entry, parts = encode_tensor(flipped, encoding)
        assert "negative_zeros" in parts and same_bits(decode_tensor(entry, parts), flipped)
        assert "negative_zeros" not in encode_tensor(t, encoding)[1]


def test_bits_pack_and_unpack():
    mask = torch.rand(37) < 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == 5
    assert torch.equal(unpack_bits(packed, 37), mask)


def test_damaged_or_foreign_files_are_refused():
    with pytest.raises(SparseFormatError, match="magic"):
        from_bytes(b"PK\x03\x04 not ours")
    data = to_bytes({"w": torch.ones(100)})
    with pytest.raises(SparseFormatError, match="past the end"):
        from_bytes(data[:-40])
