"""The Raspberry Pi image boots under emulation and serves mail (``make test-image``; slow, never in CI).

The image of ``make pi-image`` (``MAILIVERSE_PI_IMAGE``, default build/pi/mailiverse-pi-bookworm-arm64.img)
is copied and grown by 1 GiB, given a ``mailiverse.conf`` on its boot partition (with mtools, nothing
mounted), and booted in ``qemu-system-aarch64 -M virt`` with its own kernel and initrd (taken from the
boot partition), the copy as a virtio disk and user-mode networking forwarding 127.0.0.1 ports to the
guest's 25, 443 and 22.  First boot sets the appliance up; then from the host a message goes in over
STARTTLS, ``mailiverse-client`` signs up and reads it over HTTPS, and the web client loads in Chromium.
Over SSH: the delivery workers ran as their own user under their own units (privilege separation), and
``systemd-analyze security`` scores every loaded mailiverse unit.  Figures go to build/pi/test-image.txt,
the client's screenshot to build/pi/test-image-client.png.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import stop_process

TOP = Path(__file__).resolve().parents[2]
IMAGE = Path(os.environ.get("MAILIVERSE_PI_IMAGE", TOP / "build/pi/mailiverse-pi-bookworm-arm64.img"))
BIN = Path(sys.executable).parent
PASSWORD = "a long and unguessable pi password"
BOOT_OFFSET = 4 * 1024 * 1024  # the FAT partition's start (appliance/pi/build-image.sh)

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mtools(*argv: str) -> str:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout


def smtp_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(10)
            return s.recv(64).startswith(b"220")
    except OSError:
        return False


def test_image_boots_sets_up_and_serves_mail(
    tmp_path: Path, client_renders: Callable[[str, str], None], browser: Any
) -> None:
    if not IMAGE.exists():
        pytest.skip(f"no image at {IMAGE}: make pi-image")
    for tool in ("qemu-system-aarch64", "mcopy", "ssh"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(IMAGE), str(disk)], check=True)
    with disk.open("r+b") as f:
        f.truncate(disk.stat().st_size + 1024**3)  # first boot grows the root partition into it
    fat = f"{disk}@@{BOOT_OFFSET}"
    names = mtools("mdir", "-b", "-i", fat, "::/").split()
    kernel = next(n for n in names if re.search(r"vmlinuz-[^/]*$", n)).rsplit("/", 1)[-1]
    initrd = next(n for n in names if re.search(r"initrd\.img-[^/]*$", n)).rsplit("/", 1)[-1]
    for name in (kernel, initrd):
        mtools("mcopy", "-i", fat, f"::/{name}", str(tmp_path / name))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    conf = tmp_path / "mailiverse.conf"
    conf.write_text(
        "DOMAIN=example.org\r\nHOSTNAME=mail.example.org\r\nACME=no\r\n"
        f'SSH_KEY="{(tmp_path / "id_ed25519.pub").read_text().strip()}"\r\n'
    )
    mtools("mcopy", "-i", fat, str(conf), "::/mailiverse.conf")

    smtp, https, ssh = free_port(), free_port(), free_port()
    forwards = ",".join(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in ((smtp, 25), (https, 443), (ssh, 22)))
    console = tmp_path / "console.log"
    qemu = [
        *("qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024"),
        *("-kernel", str(tmp_path / kernel), "-initrd", str(tmp_path / initrd)),
        *("-append", "root=LABEL=RASPIROOT rw rootwait console=ttyAMA0 net.ifnames=0"),
        *("-drive", f"file={disk},if=virtio,format=raw"),
        *("-netdev", f"user,id=net0,{forwards}", "-device", "virtio-net-pci,netdev=net0"),
        *("-display", "none", "-monitor", "none", "-serial", f"file:{console}"),
    ]
    started = time.monotonic()
    vm = subprocess.Popen(qemu, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    figures = []
    try:
        deadline = started + 30 * 60
        while not smtp_banner(smtp):
            assert vm.poll() is None, vm.stderr.read().decode() if vm.stderr else "qemu exited"
            assert time.monotonic() < deadline, console.read_text(errors="replace")[-4000:]
            time.sleep(3)
        ready = time.monotonic() - started
        figures.append(f"boot (first boot with set-up) to SMTP banner under emulation: {ready:.0f} s")
        log = console.read_text(errors="replace")
        assert "mailiverse._domainkey.example.org." in log, "the DNS records were not shown on the console"
        assert "root file system grown" in log

        message = EmailMessage()
        message["From"] = "bob@remote.test"
        message["To"] = "pia@example.org"
        message["Subject"] = "to the Pi"
        message.set_content("delivered over STARTTLS to the emulated Pi\n")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        pem = ssl.get_server_certificate(("127.0.0.1", https), timeout=60)
        fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
        client = [str(BIN / "mailiverse-client"), "--server", f"https://127.0.0.1:{https}", "--user", "pia"]
        client += ["--fingerprint", fingerprint]
        environ = {**os.environ, "MAILIVERSE_PASSWORD": PASSWORD}

        def run_client(*argv: str) -> str:
            done = subprocess.run(
                [*client, *argv], capture_output=True, text=True, env=environ, stdin=subprocess.DEVNULL, timeout=600
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        run_client("signup")  # the first account needs no invite
        with smtplib.SMTP("127.0.0.1", smtp, local_hostname="client.test", timeout=120) as session:
            session.starttls(context=context)
            assert session.send_message(message, "bob@remote.test", ["pia@example.org"]) == {}
        deadline = time.monotonic() + 300
        while True:
            listing = run_client("ls")
            if "to the Pi" in listing:
                break
            assert time.monotonic() < deadline, listing
            time.sleep(5)
        message_id = listing.splitlines()[0].split("\t")[0]
        assert "delivered over STARTTLS to the emulated Pi" in run_client("read", message_id)

        # the web client, served by the Pi, in Chromium: it loads, asks the API and shows the sign-up domain
        loaded = time.monotonic()
        client_renders(f"https://127.0.0.1:{https}", "example.org")
        figures.append(
            f"web client loaded and rendered in Chromium from the emulated Pi: {time.monotonic() - loaded:.1f} s"
        )
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1000, "height": 700})
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.goto(f"https://127.0.0.1:{https}/")
            page.locator("#login-form").wait_for()
            page.screenshot(path=str(IMAGE.parent / "test-image-client.png"))
        finally:
            context.close()

        # the DNS records on the boot partition, and a look inside over SSH (the key from mailiverse.conf)
        remote = [
            *("ssh", "-i", str(key), "-p", str(ssh), "-o", "StrictHostKeyChecking=no"),
            *("-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "root@127.0.0.1"),
        ]
        inside = subprocess.run(
            [
                *remote,
                "cat /boot/firmware/mailiverse-dns.txt; echo ===; ps -o rss= -C twistd; echo ===;"
                " df -m --output=size /; echo ===;"
                # the loaded services' scores list only running ones: the first-boot unit (done) is asked for by name
                " systemd-analyze security --no-pager | grep mailiverse;"
                " systemd-analyze security --no-pager mailiverse-firstboot.service"
                " | sed -n 's/^.*Overall exposure level for //p'; echo ===;"
                " ps -eo user:20,args | grep '[m]ailiverse.delivery.worker'; echo ===;"
                " ps -eo user:20,args | grep '[t]wistd'; echo ===;"
                " systemctl show -p Result --value mailiverse-firstboot.service; echo ===;"
                " systemd-analyze blame --no-pager | head -n 6",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert inside.returncode == 0, inside.stderr
        dns, rss, size, security, workers, twistd, firstboot, blame = inside.stdout.split("===\n")
        figures.append(
            "slowest units of the boot (systemd-analyze blame): "
            + "; ".join(" ".join(line.split()) for line in blame.splitlines())
        )
        assert "mailiverse._domainkey.example.org." in dns
        figures.append(f"idle RSS of twistd on arm64 (KiB, after one delivery): {' '.join(rss.split())}")
        figures.append(f"root file system after first boot (MiB): {size.split()[-1]}")
        # privilege separation: the listeners as mailiverse, every worker as mailiverse-worker, not twistd's child
        assert twistd.split()[0] == "mailiverse", twistd
        worker_users = [line.split()[0] for line in workers.splitlines() if line.strip()]
        assert worker_users and set(worker_users) == {"mailiverse-worker"}, workers
        assert firstboot.strip() == "success"
        scores = {}
        for line in security.replace(":", "").splitlines():
            unit, value = line.split()[:2]
            scores[unit] = float(value)
            figures.append(f"systemd-analyze security {unit}: {' '.join(line.split()[1:])}")
        assert "mailiverse.service" in scores and any(u.startswith("mailiverse-worker@") for u in scores), security
        assert "mailiverse-firstboot.service" in scores
        assert max(scores.values()) <= 4.0, security

        # The upgrade path on the device, under systemd: the database put back at the previous schema (0012), the
        # package installed again over itself as an upgrade installs it, the service started: the unit's
        # ExecStartPre backs the database up before the new version migrates it, and the mail is still there.
        debs = sorted(IMAGE.parent.glob("mailiverse_*_arm64.deb"))
        if debs:
            copy = ["scp", "-i", str(key), "-P", str(ssh), "-o", "StrictHostKeyChecking=no"]
            copy += ["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", str(debs[-1])]
            subprocess.run([*copy, "root@127.0.0.1:/tmp/mailiverse.deb"], check=True, timeout=300)
            back = (
                "from sqlalchemy import create_engine; from mailiverse.store.migrate import downgrade; "
                "downgrade(create_engine('sqlite:////var/lib/mailiverse/mailiverse.sqlite3'), '0012')"
            )
            upgraded = time.monotonic()
            step = subprocess.run(
                [
                    *remote,
                    "set -e; systemctl stop mailiverse;"
                    f' runuser -u mailiverse -- /opt/mailiverse/bin/python -c "{back}";'
                    " dpkg -i /tmp/mailiverse.deb >/dev/null; systemctl start mailiverse;"
                    " ls /var/lib/mailiverse/upgrade-backups; echo ===;"
                    " journalctl -b -u mailiverse --no-pager -o cat | grep -E 'backup before the upgrade|no migration'",
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert step.returncode == 0, step.stdout + step.stderr
            listed, journal = step.stdout.split("===\n")
            assert re.search(r"^before-0012-to-\d{4}-\d{8}T\d{6}Z\.mvb$", listed, re.M), listed
            assert "passphrase" in listed.split()
            assert "backup before the upgrade from 0012" in journal, journal
            deadline = time.monotonic() + 600
            while not smtp_banner(smtp):
                assert time.monotonic() < deadline, "the upgraded appliance did not come back"
                time.sleep(3)
            assert "delivered over STARTTLS to the emulated Pi" in run_client("read", message_id)
            figures.append(
                f"upgrade from schema 0012 (backup, migration) to SMTP ready: {time.monotonic() - upgraded:.0f} s"
            )
            figures.append("upgrade backup: " + journal.strip().splitlines()[-1])
    finally:
        stop_process(vm)
        if console.exists():
            shutil.copy(console, IMAGE.parent / "test-image-console.log")
        (IMAGE.parent / "test-image.txt").write_text("\n".join(figures) + "\n")
        print("\n" + "\n".join(figures))
