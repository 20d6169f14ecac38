"""The protobuf wire format, as much as reading ONNX and Caffe model files needs, without protobuf itself.

https://protobuf.dev/programming-guides/encoding/ ; board side, Python 3.8+.
"""


def varint(n):
    """Base-128 little-endian varint; a negative int32/int64 is its 64-bit two's complement (ten bytes)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def fields(data):
    """(number, wire type, value, start, end) of each field of one message; `value` is an int, or for a
    length-delimited field a memoryview of its bytes; data[start:end] is the whole field. ValueError if malformed."""
    view, i = memoryview(data), 0
    while i < len(view):
        start = i
        key, i = _read_varint(view, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, i = _read_varint(view, i)
        elif wire_type == 2:
            size, i = _read_varint(view, i)
            value, i = view[i:i + size], i + size
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            value, i = int.from_bytes(view[i:i + width], "little"), i + width
        else:
            raise ValueError(f"field {number} at byte {start} has wire type {wire_type}, which is not protobuf's")
        if i > len(view):
            raise ValueError(f"field {number} at byte {start} runs past the end of the message")
        yield number, wire_type, value, start, i


def _read_varint(view, i):
    value = shift = 0
    while True:
        if i >= len(view):
            raise ValueError("a varint runs past the end of the message")
        byte = view[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i
