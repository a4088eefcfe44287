"""A real IMAP server for the mailbox tests: Debian's Dovecot (``make mail-setup`` installs
``dovecot-imapd``), started as our own process (``dovecot -F -c <conf>``, not the system service)
on a free loopback port, with a throw-away Maildir store and a passwd-file user database.

Tests put messages in with IMAP APPEND (:meth:`Dovecot.append`) and change a folder's UIDVALIDITY
with ``doveadm mailbox update`` (:meth:`Dovecot.set_uidvalidity`), as a server migration would.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mail_owner() -> tuple[str, str]:
    """Whose files the mail store holds: Dovecot refuses uid 0, so as root the store belongs to
    ``nobody``; as anyone else, to that user."""
    if os.getuid() == 0:
        return "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    return pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name


def _config(root: Path, port: int) -> str:
    user, group = _mail_owner()
    # As root Dovecot drops to its own unprivileged users (the package creates them); as anyone
    # else it runs everything as that user (Dovecot's "rootless" mode).
    internal, login = ("dovecot", "dovenull") if os.getuid() == 0 else (user, user)
    user_group = group
    return f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = static
  args = uid={user} gid={user_group} home={root}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
"""


@dataclass
class Dovecot:
    root: Path
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    def add_user(self, username: str, password: str) -> None:
        """A mailbox user (the passwd-file is re-read on each login)."""
        self.users[username] = password
        # One passwd-file per user (the path names the user): Dovecot caches an open passwd-file
        # until its mtime moves, which two users added within one second would not do.
        (self.root / "users" / username).write_text(f"{username}:{{PLAIN}}{password}::::::\n")

    def connect(self, username: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        client.login(username, self.users[username])
        return client

    def append(self, username: str, folder: str, message: bytes) -> None:
        client = self.connect(username)
        try:
            status, _ = client.append(_quoted(folder), None, None, message)
            assert status == "OK", status
        finally:
            client.logout()

    def create_folder(self, username: str, folder: str) -> None:
        client = self.connect(username)
        try:
            client.create(_quoted(folder))
        finally:
            client.logout()

    def uidvalidity(self, username: str, folder: str) -> int:
        client = self.connect(username)
        try:
            status, data = client.status(_quoted(folder), "(UIDVALIDITY)")
            assert status == "OK", data
            raw = data[0]
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            return int(text.rsplit("UIDVALIDITY", 1)[1].strip(" )"))
        finally:
            client.logout()

    def set_uidvalidity(self, username: str, folder: str, value: int) -> None:
        """What a server migration or a rebuilt index does: the folder's UIDs start again."""
        subprocess.run(
            [
                str(DOVEADM),
                "-c",
                str(self.config_path),
                "mailbox",
                "update",
                "-u",
                username,
                "--uid-validity",
                str(value),
                folder,
            ],
            check=True,
            capture_output=True,
        )


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextlib.contextmanager
def running_dovecot(root: Path) -> Iterator[Dovecot]:
    if not DOVECOT.exists():
        raise RuntimeError("Dovecot is not installed: run `make mail-setup` (apt-get install dovecot-imapd)")
    for folder in ("run", "state", "mail", "home", "users"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    if os.getuid() == 0:
        owner = pwd.getpwnam(_mail_owner()[0])
        for folder in ("mail", "home"):
            os.chown(root / folder, owner.pw_uid, owner.pw_gid)
    port = free_port()
    server = Dovecot(root=root, port=port)
    server.config_path.write_text(_config(root, port))
    server.add_user("probe", "probe")
    server.process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(server.config_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_until_listening(server)
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
        if not os.environ.get("KEEP_DOVECOT"):
            shutil.rmtree(root, ignore_errors=True)


def _wait_until_listening(server: Dovecot) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            log = (server.root / "dovecot.log").read_text() if (server.root / "dovecot.log").exists() else ""
            output = server.process.stdout.read().decode() if server.process.stdout else ""
            raise RuntimeError(f"dovecot exited ({server.process.returncode}): {output}\n{log}")
        try:
            server.connect("probe").logout()
            return
        except OSError:
            time.sleep(0.05)  # polling a starting server's port, not timing a behaviour
    raise RuntimeError("dovecot did not start listening within 20 s")
