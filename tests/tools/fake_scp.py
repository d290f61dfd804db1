#!/usr/bin/env python3
"""A deliberately unhelpful DICOM destination for tests, written from PS3.8
and PS3.7 with no DICOM library: it accepts every association and every
presentation context (first transfer syntax proposed), answers C-ECHO with
Success, and answers every C-STORE with the status and the raw Error Comment
(0000,0902) bytes given on the command line (e.g. 0xA700 and Latin-1 text
holding 0xFF), as a European PACS may do.

With DELAY_MS it is a slow peer: each C-STORE response waits that long
(per association). With RECEIVED_LOG it appends the Affected SOP Instance
UID of each C-STORE to that file, one line each, as it answers.

usage: fake_scp.py PORT STATUS_HEX [ERROR_COMMENT_HEX [DELAY_MS [RECEIVED_LOG]]]
"""
import socket
import struct
import sys
import threading
import time

DELAY_S = 0.0
RECEIVED_LOG = None
LOG_LOCK = threading.Lock()


def recv_exact(conn, n):
    buf = b''
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_pdu(conn):
    head = recv_exact(conn, 6)
    pdu_type, _, length = struct.unpack('>BBI', head)
    return pdu_type, recv_exact(conn, length)


def item(item_type, body):
    return struct.pack('>BBH', item_type, 0, len(body)) + body


def associate_ac(rq):
    # PS3.8 9.3.2: the AC echoes called/calling AE titles and the reserved field.
    fixed = rq[:68]
    out = b''
    pos = 68
    while pos + 4 <= len(rq):
        t, _, ln = struct.unpack('>BBH', rq[pos:pos + 4])
        body = rq[pos + 4:pos + 4 + ln]
        pos += 4 + ln
        if t == 0x10:
            out += item(0x10, body)
        elif t == 0x20:  # presentation context RQ (PS3.8 9.3.2.2)
            pcid = body[0]
            ts = None
            p = 4
            while p + 4 <= len(body):
                st, _, sl = struct.unpack('>BBH', body[p:p + 4])
                if st == 0x40 and ts is None:
                    ts = body[p + 4:p + 4 + sl]
                p += 4 + sl
            out += item(0x21, bytes([pcid, 0, 0, 0]) + item(0x40, ts or b'1.2.840.10008.1.2'))
    ui = item(0x51, struct.pack('>I', 16384)) + item(0x52, b'1.2.826.0.1.3680043.10.1042.99')
    out += item(0x50, ui)
    body = fixed + out
    return struct.pack('>BBI', 0x02, 0, len(body)) + body


def element(group, elem, value):
    if len(value) % 2:
        value += b' '
    return struct.pack('<HHI', group, elem, len(value)) + value


def parse_command(data):
    """Implicit VR Little Endian group 0000 (PS3.7 6.3.1) into {elem: bytes}."""
    out = {}
    pos = 0
    while pos + 8 <= len(data):
        g, e, ln = struct.unpack('<HHI', data[pos:pos + 8])
        out[(g, e)] = data[pos + 8:pos + 8 + ln]
        pos += 8 + ln
    return out


def response(cmd, status, comment):
    field = struct.unpack('<H', cmd[(0, 0x100)])[0]
    msg_id = struct.unpack('<H', cmd[(0, 0x110)])[0]
    store = field == 0x0001
    body = b''
    sop_class = cmd.get((0, 0x2), b'').rstrip(b'\0 ')
    body += element(0, 0x2, sop_class + b'\0' if len(sop_class) % 2 else sop_class)
    body += element(0, 0x100, struct.pack('<H', 0x8001 if store else 0x8030))
    body += element(0, 0x120, struct.pack('<H', msg_id))
    body += element(0, 0x800, struct.pack('<H', 0x0101))
    st = status if store else 0
    body += element(0, 0x900, struct.pack('<H', st))
    if store:  # in ascending tag order: (0000,0902) before (0000,1000)
        if st != 0 and comment:
            body += element(0, 0x902, comment)
        uid = cmd.get((0, 0x1000), b'').rstrip(b'\0 ')
        body += element(0, 0x1000, uid + b'\0' if len(uid) % 2 else uid)
    return element(0, 0x0, struct.pack('<I', len(body))) + body


def serve(conn, status, comment):
    try:
        cmd_bytes = b''
        cmd = None
        while True:
            t, body = read_pdu(conn)
            if t == 0x01:
                conn.sendall(associate_ac(body))
            elif t == 0x04:  # P-DATA-TF: PDVs (PS3.8 9.3.5.1)
                pos = 0
                while pos + 6 <= len(body):
                    ln = struct.unpack('>I', body[pos:pos + 4])[0]
                    pcid = body[pos + 4]
                    hdr = body[pos + 5]
                    data = body[pos + 6:pos + 4 + ln]
                    pos += 4 + ln
                    if hdr & 0x01:
                        cmd_bytes += data
                        if hdr & 0x02:
                            cmd = parse_command(cmd_bytes)
                            cmd_bytes = b''
                            has_data = struct.unpack('<H', cmd[(0, 0x800)])[0] != 0x0101
                            if not has_data:
                                send_rsp(conn, pcid, cmd, status, comment)
                                cmd = None
                    elif hdr & 0x02 and cmd is not None:
                        send_rsp(conn, pcid, cmd, status, comment)
                        cmd = None
            elif t == 0x05:  # A-RELEASE-RQ
                conn.sendall(struct.pack('>BBIi', 0x06, 0, 4, 0))
                return
            else:
                return
    except (EOFError, OSError, KeyError, struct.error):
        pass
    finally:
        conn.close()


def send_rsp(conn, pcid, cmd, status, comment):
    if struct.unpack('<H', cmd[(0, 0x100)])[0] == 0x0001:  # C-STORE-RQ
        if DELAY_S > 0:
            time.sleep(DELAY_S)
        if RECEIVED_LOG:
            uid = cmd.get((0, 0x1000), b'').rstrip(b'\0 ').decode('ascii', 'replace')
            with LOG_LOCK, open(RECEIVED_LOG, 'a') as f:
                f.write(uid + '\n')
    rsp = response(cmd, status, comment)
    pdv = struct.pack('>IBB', len(rsp) + 2, pcid, 0x03) + rsp
    conn.sendall(struct.pack('>BBI', 0x04, 0, len(pdv)) + pdv)


def main():
    port = int(sys.argv[1])
    status = int(sys.argv[2], 16)
    comment = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else b''
    global DELAY_S, RECEIVED_LOG
    if len(sys.argv) > 4:
        DELAY_S = int(sys.argv[4]) / 1000.0
    if len(sys.argv) > 5:
        RECEIVED_LOG = sys.argv[5]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(('127.0.0.1', port))
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn, status, comment), daemon=True).start()


if __name__ == '__main__':
    main()
