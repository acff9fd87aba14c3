"""Debian's SpamAssassin, run offline over a batch of messages: each message's score and rules.

One process scores them all (``spamassassin`` takes several paths), with local tests only
(``-L``: no DNS blocklists, no Razor/Pyzor, no network), the rules the package ships, and no
Bayes or auto-learning, so a run depends on nothing but the messages and those rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Added to each message by the run: every rule that fired with its points, "RULE=0.1,...".
RULES_HEADER = "X-Spam-Rules"
_CONFIG = (
    "dns_available no",  # as -L says, once more: no lookups even if a rule asks
    "use_bayes 0",
    "bayes_auto_learn 0",
    f"add_header all {RULES_HEADER.removeprefix('X-Spam-')} _TESTSSCORES(,)_",
)
_CHECKER = re.compile(rb"^X-Spam-Checker-Version:", re.MULTILINE)
_SCORE = re.compile(r"\bscore=(-?\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Score:
    """What SpamAssassin made of one message."""

    score: float
    rules: dict[str, float]

    def rules_text(self) -> str:
        """The rules that fired, biggest first, as "RULE (+0.7)"."""
        ordered = sorted(self.rules.items(), key=lambda item: (-abs(item[1]), item[0]))
        return ", ".join(f"{name} ({points:+.1f})" for name, points in ordered) or "none"


def spamassassin() -> str | None:
    """The spamassassin program, or None when it is not installed."""
    return shutil.which("spamassassin")


def score_messages(messages: list[bytes], workdir: Path) -> list[Score]:
    """Score each message (wire bytes) with SpamAssassin, offline; in the order given."""
    program = spamassassin()
    assert program is not None, "spamassassin is not installed"
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, message in enumerate(messages):
        path = workdir / f"{number:02d}.eml"
        path.write_bytes(message)
        paths.append(str(path))
    prefs = workdir / "user_prefs"
    prefs.write_text("")
    command = [program, "--local", "--nocreate-prefs", f"--prefspath={prefs}"]
    command += [f"--cf={line}" for line in _CONFIG]
    # HOME in the work folder: nothing is read from or written to the user's ~/.spamassassin.
    env = {"HOME": str(workdir), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    done = subprocess.run(command + paths, capture_output=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return _parse(done.stdout, len(messages))


def _parse(output: bytes, expected: int) -> list[Score]:
    """Split SpamAssassin's output into its messages and read each one's added headers."""
    starts = [match.start() for match in _CHECKER.finditer(output)]
    assert len(starts) == expected, f"{len(starts)} results for {expected} messages"
    chunks = [output[a:b] for a, b in zip(starts, [*starts[1:], len(output)], strict=True)]
    return [_score(chunk) for chunk in chunks]


def _score(chunk: bytes) -> Score:
    """The score and rules from the headers SpamAssassin put on top of one message."""
    head = chunk.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n").decode("utf-8", "replace")
    unfolded = re.sub(r"\n[ \t]+", " ", head)
    fields = dict(
        line.split(":", 1) for line in unfolded.splitlines() if line.startswith("X-Spam-")
    )
    status = _SCORE.search(fields.get("X-Spam-Status", ""))
    assert status, f"no score in:\n{head}"
    rules = {}
    for item in fields.get(RULES_HEADER, "").replace(" ", "").split(","):
        if "=" in item:
            name, points = item.split("=", 1)
            rules[name] = float(points)
    return Score(float(status.group(1)), rules)
