#!/usr/bin/env python3
"""Writes the checked-in seed corpora of the fuzz targets (fuzz/corpus/*).

Byte layouts are PS3.8 9.3 (PDUs) and PS3.7 E.1 / 9.3 (command sets,
Implicit VR Little Endian). Run from anywhere; it overwrites its own seeds.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
SHARED = os.path.join(HERE, "..", "..", "shared", "corpus")

APP_CTX = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
CT = b"1.2.840.10008.5.1.4.1.1.2"
IVR = b"1.2.840.10008.1.2"
EVR = b"1.2.840.10008.1.2.1"


def item(t, body):
    return struct.pack(">BBH", t, 0, len(body)) + body


def pdu(t, body):
    return struct.pack(">BBI", t, 0, len(body)) + body


def ae(s):
    return s.ljust(16).encode()


def assoc_rq(contexts, called="RELAIS", calling="FUZZ", max_len=16384):
    body = struct.pack(">HH", 1, 0) + ae(called) + ae(calling) + b"\0" * 32
    body += item(0x10, APP_CTX)
    for cid, abstract, syntaxes in contexts:
        inner = item(0x30, abstract) + b"".join(item(0x40, ts) for ts in syntaxes)
        body += item(0x20, struct.pack(">BBBB", cid, 0, 0, 0) + inner)
    user = item(0x51, struct.pack(">I", max_len)) + item(0x52, b"1.2.3.4.5.6") + item(0x55, b"FUZZ_1")
    body += item(0x50, user)
    return pdu(0x01, body)


def assoc_ac():
    body = struct.pack(">HH", 1, 0) + ae("RELAIS") + ae("FUZZ") + b"\0" * 32
    body += item(0x10, APP_CTX)
    body += item(0x21, struct.pack(">BBBB", 1, 0, 0, 0) + item(0x40, IVR))
    body += item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3.4"))
    return pdu(0x02, body)


def elem(group, elem_, value):
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem_, len(value)) + value


def command(fields):
    body = b"".join(elem(0, e, v) for e, v in fields)
    return elem(0, 0x0000, struct.pack("<I", len(body))) + body


def pdata(cid, data, is_command, last=True):
    ctrl = (1 if is_command else 0) | (2 if last else 0)
    pdv = struct.pack(">IBB", len(data) + 2, cid, ctrl) + data
    return pdu(0x04, pdv)


def echo_rq(msg=1):
    return command([(0x0002, VERIFICATION), (0x0100, struct.pack("<H", 0x0030)),
                    (0x0110, struct.pack("<H", msg)), (0x0800, struct.pack("<H", 0x0101))])


def store_rq(uid, msg=2):
    return command([(0x0002, CT), (0x0100, struct.pack("<H", 0x0001)), (0x0110, struct.pack("<H", msg)),
                    (0x0700, struct.pack("<H", 0)), (0x0800, struct.pack("<H", 0x0000)), (0x1000, uid)])


def ivr_dataset(uid):
    # Implicit VR LE data set: SOP Class, SOP Instance, Modality, Patient ID,
    # Study and Series UIDs, a small Pixel Data.
    return (elem(0x0008, 0x0016, CT) + elem(0x0008, 0x0018, uid) + elem(0x0008, 0x0060, b"CT") +
            elem(0x0010, 0x0020, b"PAT1") + elem(0x0020, 0x000D, b"1.2.3.4") + elem(0x0020, 0x000E, b"1.2.3.4.5") +
            elem(0x7FE0, 0x0010, b"\x01\x02" * 32))


def evr_uids(uid):
    """SOP Class and Instance UIDs in Explicit VR Little Endian."""
    out = b""
    for tag, value in ((0x0016, CT), (0x0018, uid)):
        if len(value) % 2:
            value += b"\0"
        out += struct.pack("<HH2sH", 0x0008, tag, b"UI", len(value)) + value
    return out


def release_rq():
    return pdu(0x05, b"\0\0\0\0")


def abort():
    return pdu(0x07, b"\0\0\0\0")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    ctxs = [(1, VERIFICATION, [IVR]), (3, CT, [EVR, IVR])]
    rq = assoc_rq(ctxs)
    uid = b"1.2.826.0.1.3680043.2.1125.1"
    echo = pdata(1, echo_rq(), True)
    store = pdata(3, store_rq(uid), True) + pdata(3, ivr_dataset(uid), False)
    # Split data set: two fragments.
    ds = ivr_dataset(uid + b"2")
    store_split = (pdata(3, store_rq(uid + b"2", 3), True) + pdata(3, ds[:40], False, last=False) +
                   pdata(3, ds[40:], False))
    sessions = {
        "echo": rq + echo + release_rq(),
        "store": rq + store + release_rq(),
        "store_split": rq + store_split + release_rq(),
        "abort": rq + abort(),
        "wrong_called": assoc_rq(ctxs, called="NOTME"),
        "no_release": rq + echo,
    }
    for name, data in sessions.items():
        write("association", name, data)
        # pdu_fuzz: first byte is the read size pattern.
        write("pdu", name, bytes([0x1F]) + data)
        # fsm_fuzz: acceptor, then the PDUs (op bytes < 0xF0 mean "a PDU follows").
        write("fsm", name, b"\x01" + b"".join(b"\x00" + p for p in split_pdus(data)))
    write("pdu", "assoc_ac", b"\x07" + assoc_ac())
    write("fsm", "requestor", b"\x00\xf0\xf1\x00" + assoc_ac() + b"\xf5\xf7")
    write("dimse", "echo", echo_rq())
    write("dimse", "store", store_rq(uid))
    write("dimse", "store_rsp", command([(0x0002, CT), (0x0100, struct.pack("<H", 0x8001)),
                                         (0x0120, struct.pack("<H", 2)), (0x0800, struct.pack("<H", 0x0101)),
                                         (0x0900, struct.pack("<H", 0xA700)), (0x0902, b"out of resources"),
                                         (0x1000, uid)]))
    write("header", "ivr_ct", b"\x00\x10" + ivr_dataset(uid))
    # Regression: 100000 nested sequences crashed DCMTK's recursive reader
    # (stack exhaustion) before the nesting bound; 80 levels here, over it.
    nested = b"".join(struct.pack("<HH2sHIHHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF, 0xFFFE, 0xE000, 0xFFFFFFFF)
                      for _ in range(80))
    write("header", "deep_nesting", b"\x01\x10" + evr_uids(uid) + nested)
    # Small real files' data sets (after the File Meta Information).
    if os.path.isdir(SHARED):
        for name in ["pydicom__SC_rgb_small_odd.dcm", "pydicom__priv_SQ.dcm", "pydicom__UN_sequence.dcm",
                     "pydicom__chrSQEncoding.dcm", "octavedicom__simple-test.dcm"]:
            path = os.path.join(SHARED, name)
            if not os.path.exists(path):
                continue
            raw = open(path, "rb").read()
            write("header", name, b"\x01\x10" + dataset_of(raw))
    # Regression: 40,000-part dotted keys and headers overflowed toml++'s
    # stack; the nesting scanner refuses the 65th part (80 here).
    write("config", "deep_dotted_key", b"x" + b".a" * 80 + b" = 1\n")
    write("config", "deep_table_header", b"[x" + b".a" * 80 + b"]\n")
    write("config", "deep_inline_dotted", b"[[rule]]\nmatch = { x" + b'."a"' * 80 + b" = 1 }\n")
    for name in sorted(os.listdir(os.path.join(HERE, "..", "appliance"))):
        if name.endswith(".toml"):
            write("config", name, open(os.path.join(HERE, "..", "appliance", name), "rb").read())
    return 0


def split_pdus(data):
    out = []
    while len(data) >= 6:
        n = struct.unpack(">I", data[2:6])[0]
        out.append(data[:6 + n])
        data = data[6 + n:]
    return out


def dataset_of(raw):
    """The data set after the preamble and File Meta group (group 0002 is Explicit VR LE)."""
    if raw[128:132] != b"DICM":
        return raw
    off = 132
    while off + 8 <= len(raw):
        group = struct.unpack("<H", raw[off:off + 2])[0]
        if group != 2:
            break
        vr = raw[off + 4:off + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = struct.unpack("<I", raw[off + 8:off + 12])[0]
            off += 12 + length
        else:
            length = struct.unpack("<H", raw[off + 6:off + 8])[0]
            off += 8 + length
    return raw[off:]


if __name__ == "__main__":
    sys.exit(main())
