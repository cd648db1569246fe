"""``student.packed``: a binary or ternary student stored at 1 or 2 bits per quantized weight.

File format, version 1 (all integers little-endian)::

    offset 0   4 bytes   magic b"XPK1"
    offset 4   uint32    H, the length of the header
    offset 8   H bytes   header: zlib-compressed UTF-8 JSON
    offset 8+H           payload: the tensors of header["tensors"], in that order, back to back

The header is ``{"version": 1, "model": {...}, "quant": {...}, "tensors": [[name, encoding, shape, dtype], ...]}``:
``model`` says how to rebuild the architecture (``architecture``, ``num_classes``, ``in_channels``,
``width``: ``students.zoo.build_student``'s arguments) and ``quant`` is the ``quant.QuantSpec`` (``bits``,
``binary_activations``, ``keep_first_last``). ``tensors`` lists every entry of the frozen model's
state dict; ``shape`` is the tensor's shape, ``C = shape[0]`` (output channels) and ``n`` its element count:

- ``"b1"`` (binary weight): ``C`` float32 scales ``a_c``, then ``ceil(n / 8)`` bytes of sign bits in
  C order, 8 per byte, least significant bit first (``numpy.packbits(bitorder="little")``): bit 1
  is ``+a_c``, bit 0 is ``-a_c``.
- ``"t2"`` (ternary weight): ``C`` float32 scales ``a_c``, then ``ceil(n / 4)`` bytes of 2-bit codes
  in C order, 4 per byte, lowest bits first: 0 is ``0``, 1 is ``+a_c``, 2 is ``-a_c`` (3 is invalid).
- ``"raw"``: ``n`` values of numpy ``dtype`` (``"float32"``, ``"int64"``, ``"bool"``): BatchNorm,
  biases, binary-input thresholds and the full-precision first and last layers.

Unpacking reproduces the frozen weights ``a_c * {-1, 0, +1}`` bit for bit (the product of a float32
and +-1 is exact), so the rebuilt model computes exactly what the packed one did.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from extractor.errors import ConfigError
from extractor.students.quant import QuantSpec, freeze, quantize_layers, quantized_layers
from extractor.students.zoo import build_student

MAGIC = b"XPK1"
VERSION = 1
_ENCODING = {1: "b1", 2: "t2"}
_CODES_PER_BYTE = {"b1": 8, "t2": 4}


@dataclass(frozen=True)
class Architecture:
    """What ``students.zoo.build_student`` needs to rebuild the network."""

    architecture: str
    num_classes: int
    in_channels: int
    width: float = 1.0


def _codes(weight: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """(C, ...) frozen weight -> ((C,) float32 scales, flat uint8 codes)."""
    rows = weight.reshape(weight.shape[0], -1)
    scales = np.abs(rows).max(axis=1).astype(np.float32)
    if encoding == "b1":
        return scales, (rows >= 0).astype(np.uint8).ravel()
    codes = np.where(rows > 0, 1, np.where(rows < 0, 2, 0)).astype(np.uint8)
    return scales, codes.ravel()


def _pack_codes(codes: np.ndarray, encoding: str) -> bytes:
    if encoding == "b1":
        return np.packbits(codes, bitorder="little").tobytes()
    padded = np.zeros(-(-len(codes) // 4) * 4, dtype=np.uint8)
    padded[:len(codes)] = codes
    quads = padded.reshape(-1, 4)
    return (quads[:, 0] | quads[:, 1] << 2 | quads[:, 2] << 4 | quads[:, 3] << 6).astype(np.uint8).tobytes()


def _unpack_codes(data: bytes, count: int, encoding: str) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    if encoding == "b1":
        return np.unpackbits(raw, bitorder="little")[:count]
    return np.stack([(raw >> shift) & 3 for shift in (0, 2, 4, 6)], axis=1).ravel()[:count]


def check_levels(name: str, weight: np.ndarray, encoding: str) -> None:
    """Raises ``ValueError`` unless every output channel of ``weight`` holds only ``{-a, (0,) +a}``."""
    rows = np.abs(weight.reshape(weight.shape[0], -1))
    scales = rows.max(axis=1, keepdims=True)
    allowed = (rows == scales) | ((rows == 0) & (encoding == "t2"))
    if not allowed.all():
        raise ValueError(f"{name} is not {'binary' if encoding == 'b1' else 'ternary'} per output channel; "
                         "freeze the model (quant.freeze) before packing")


def pack(model: nn.Module, arch: Architecture, spec: QuantSpec, path: Path) -> int:
    """Writes a frozen quantized ``model`` as ``student.packed``; returns the file's size in bytes.

    Raises:
        ValueError: If a quantized layer is not frozen, or its weights are not binary/ternary.
    """
    layers = quantized_layers(model)
    if not all(layer.frozen for layer in layers.values()):
        raise ValueError("pack needs a frozen model: call quant.freeze(model) first")
    quantized = {f"{name}.weight": _ENCODING[layer.bits] for name, layer in layers.items()}
    entries, chunks = [], []
    for name, tensor in model.state_dict().items():
        array = tensor.detach().cpu().numpy()
        encoding = quantized.get(name, "raw")
        entries.append([name, encoding, list(array.shape), str(array.dtype)])
        if encoding == "raw":
            chunks.append(np.ascontiguousarray(array).tobytes())
            continue
        check_levels(name, array, encoding)
        scales, codes = _codes(array, encoding)
        chunks += [scales.tobytes(), _pack_codes(codes, encoding)]
    header = zlib.compress(json.dumps({"version": VERSION, "model": asdict(arch), "quant": asdict(spec),
                                       "tensors": entries}, separators=(",", ":")).encode(), 9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.write(MAGIC + struct.pack("<I", len(header)) + header)
        file.writelines(chunks)
    return path.stat().st_size


def _read_header(data: bytes) -> tuple[dict, int]:
    if data[:4] != MAGIC:
        raise ConfigError(f"not a student.packed file (magic {data[:4]!r}, expected {MAGIC!r})")
    (length,) = struct.unpack("<I", data[4:8])
    header = json.loads(zlib.decompress(data[8:8 + length]))
    if header["version"] != VERSION:
        raise ConfigError(f"student.packed version {header['version']} is not supported (this reads {VERSION})")
    return header, 8 + length


def unpack_state(path: Path) -> tuple[dict[str, torch.Tensor], Architecture, QuantSpec]:
    """The frozen state dict stored in ``path``, with what is needed to rebuild the model."""
    data = Path(path).read_bytes()
    header, offset = _read_header(data)
    state = {}
    for name, encoding, shape, dtype in header["tensors"]:
        count = int(np.prod(shape, dtype=np.int64))
        if encoding == "raw":
            nbytes = count * np.dtype(dtype).itemsize
            array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        else:
            channels = shape[0]
            scales = np.frombuffer(data, dtype=np.float32, count=channels, offset=offset)
            code_bytes = -(-count // _CODES_PER_BYTE[encoding])
            codes = _unpack_codes(data[offset + 4 * channels:offset + 4 * channels + code_bytes], count, encoding)
            levels = np.array([0.0, 1.0, -1.0] if encoding == "t2" else [-1.0, 1.0], dtype=np.float32)[codes]
            array = (scales[:, None] * levels.reshape(channels, -1)).reshape(shape)
            nbytes = 4 * channels + code_bytes
        state[name] = torch.from_numpy(array.copy())
        offset += nbytes
    if offset != len(data):
        raise ConfigError(f"{path} has {len(data) - offset} bytes after its last tensor; the file is damaged")
    return state, Architecture(**header["model"]), QuantSpec(**header["quant"])


def load_packed(path: Path) -> nn.Module:
    """Rebuilds the runnable, frozen quantized model stored in ``path`` (CPU, eval mode)."""
    state, arch, spec = unpack_state(path)
    model = build_student(arch.architecture, arch.num_classes, arch.in_channels, arch.width)
    quantize_layers(model, spec)
    freeze(model)
    model.load_state_dict(state)
    return model.eval()


def ideal_bytes(model: nn.Module) -> int:
    """The information a frozen quantized model needs, with no format overhead: ``bits / 8`` bytes per
    quantized weight, 4 bytes per output-channel scale, and every other state-dict tensor as stored."""
    layers = quantized_layers(model)
    quantized = {f"{name}.weight": layer for name, layer in layers.items()}
    total = 0.0
    for name, tensor in model.state_dict().items():
        layer = quantized.get(name)
        if layer is None:
            total += tensor.numel() * tensor.element_size()
        else:
            total += tensor.numel() * layer.bits / 8 + 4 * tensor.shape[0]
    return int(np.ceil(total))
