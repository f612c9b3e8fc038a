"""Resident memory of a process, for the bench scripts beside this file."""


def rss_mb(pid):
    """VmRSS of `pid` in MB (one decimal), or None if /proc does not say."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None
