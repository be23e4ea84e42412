"""
fake_saslauthd — a stand-in for saslauthd on DIR/mux, for tests: it speaks
saslauthd's protocol (four counted strings in: login, password, service,
realm; one counted "OK"/"NO ..." out) and checks against a dict of users.
The user "hang" is never answered (until stop()), the way a saslauthd stuck
on a dead LDAP server behaves.  Runs on a thread of the test process.
"""
import os
import socket
import struct
import threading


class FakeSaslauthd:
    def __init__(self, dir, users):
        self.dir = dir
        self.users = users
        self.asked = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(os.path.join(dir, "mux"))
        self.sock.listen(16)
        self.held = []          # connections left unanswered
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _counted(conn):
        head = b""
        while len(head) < 2:
            more = conn.recv(2 - len(head))
            if not more:
                raise EOFError
            head += more
        n = struct.unpack(">H", head)[0]
        data = b""
        while len(data) < n:
            more = conn.recv(n - len(data))
            if not more:
                raise EOFError
            data += more
        return data.decode()

    def _answer(self, conn):
        try:
            conn.settimeout(30)
            login, password, service, realm = (self._counted(conn) for _ in range(4))
            self.asked.append((login, service, realm))
            login = login.split("@")[0]
            if login == "hang":
                self.held.append(conn)
                return
            ok = self.users.get(login) == password
            text = b"OK" if ok else b"NO authentication failed"
            conn.sendall(struct.pack(">H", len(text)) + text)
        except (EOFError, OSError):
            pass
        conn.close()

    def stop(self):
        """Close everything: a held login gets EOF, which Cyrus takes as a failure."""
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes the accept() (close alone does not)
        except OSError:
            pass
        self.sock.close()
        for conn in self.held:
            conn.close()
        self.held = []
