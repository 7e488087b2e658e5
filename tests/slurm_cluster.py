"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd on this host.

Everything lives in one temporary folder (slurm.conf, the munge key and socket, state, spool
and logs), and `SLURM_CONF` in `SlurmCluster.env` points the clients (sbatch, squeue, and
submitit through them) at it: /etc/slurm and /etc/munge stay untouched, and a second cluster
on the same host would not be disturbed. Root is needed (slurmd starts jobs as their user), and
Debian's `slurm-wlm` and `munge`, which `.ci/run` installs.

The configuration is a minimal real one, with three settings shortened for tests:
- `cred_expire=10`: a requeued job may start again after this (Slurm's default is 120 s);
- `sched_interval=2`, `bf_interval=2`: a job whose start time has come is started promptly;
- `KillWait=10`: the time between SIGTERM and SIGKILL when a job is cancelled or requeued.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "srun")


def why_not() -> str | None:
    """Why a cluster cannot be started here, or None."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        missing_list = ", ".join(missing)
        return f"no Slurm here ({missing_list} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(root: Path, host: str) -> str:
    cpus = os.cpu_count() or 1
    pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    memory_mb = int(pages * page / 2**20 * 0.8)
    return f"""\
ClusterName=asrtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=10
CredType=cred/munge
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
PlugStackConfig={root}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=10
MailProg=/bin/true
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]  # what a client needs: SLURM_CONF

    @classmethod
    def start(cls, root: Path, timeout: float = 60) -> SlurmCluster:
        for sub in ("munge", "state", "spool", "run", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "munge").chmod(0o755)  # the socket's folder: clients need to reach it
        key = root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        (root / "plugstack.conf").write_text("")
        host = socket.gethostname().split(".")[0]
        conf = root / "slurm.conf"
        conf.write_text(_conf(root, host))
        cluster = cls(root, {"SLURM_CONF": str(conf)})
        munge = root / "munge"
        cluster._daemon(
            "munged",
            "--force",
            f"--key-file={key}",
            f"--socket={munge / 'munge.socket'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        )
        cluster._daemon("slurmctld", "-f", str(conf))
        cluster._daemon("slurmd", "-f", str(conf))
        deadline = time.monotonic() + timeout
        while cluster.node_state() not in ("idle", "mixed", "allocated"):
            if time.monotonic() > deadline:
                cluster.stop()
                raise RuntimeError(f"Slurm did not start:\n{cluster.logs()}")
            time.sleep(0.2)
        return cluster

    def _daemon(self, *command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, env=self.client_env())
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr.strip()}\n{self.logs()}")

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with the cluster's settings."""
        return {**(os.environ if base is None else base), **self.env}

    def run(self, *command: str, check: bool = True) -> str:
        """A Slurm client command against this cluster; its standard output."""
        result = subprocess.run(
            command, capture_output=True, text=True, env=self.client_env(), timeout=60
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result.stdout

    def node_state(self) -> str:
        out = self.run("sinfo", "--noheader", "--format=%t", check=False)
        return out.strip().rstrip("*~#")

    def job_state(self, job_id: str) -> str | None:
        """squeue's state of one job (an array task as `<array>_<task>`), None once gone."""
        out = self.run(
            "squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", check=False
        )
        states = dict(line.split("|", 1) for line in out.split())
        return states.get(job_id)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted((self.root / "log").glob("*.log"))
        )

    def stop(self) -> None:
        """Cancel every job, stop the daemons, then kill whatever is left of this cluster: every
        process started with its SLURM_CONF (job steps and their tasks included)."""
        self.run("scancel", "--user=root", "--signal=KILL", "--full", check=False)
        self.run("scontrol", "shutdown", check=False)
        for name in ("run/slurmctld.pid", "run/slurmd.pid", "munge/munged.pid"):
            _stop(self.root / name)
        mark = f"SLURM_CONF={self.env['SLURM_CONF']}".encode()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and mark in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), 9)
            except (OSError, ValueError):
                continue


def _stop(pid_file: Path, timeout: float = 15) -> None:
    """Stop the daemon of `pid_file`: SIGTERM, then SIGKILL after `timeout` seconds."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig in (15, 9):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
