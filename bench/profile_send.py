"""Where a worker's time goes: the dispatch path in ONE process under cProfile, no Celery.

Seeds readers like bench/dispatch.py, plans and starts a digest with an in-process task queue,
runs the fan-out, then every ``send_batch`` under cProfile against the benchmark sink (in its own
process), and prints the CPU time per mail and the functions that take it.

    python bench/profile_send.py --readers 5000 --db postgres [--dkim]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dispatch import database, dkim_key_file, seed, sink_process  # noqa: E402


@dataclass
class ListQueue:
    """A TaskQueue that keeps what would have been enqueued, to run it in this process."""

    fan_outs: list[int] = field(default_factory=list)
    batches: list[tuple[int, list[int]]] = field(default_factory=list)

    def fan_out(self, issue_id: int) -> None:
        """Remember a fan-out."""
        self.fan_outs.append(issue_id)

    def send_batch(self, issue_id: int, delivery_ids: list[int]) -> None:
        """Remember a batch."""
        self.batches.append((issue_id, delivery_ids))


def main(argv: list[str] | None = None) -> int:
    """Profile one send."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=5000)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--dkim", action="store_true")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args(argv)

    from newsletter.delivery.batches import send_batch
    from newsletter.delivery.fan_out import fan_out
    from newsletter.issues import lifecycle
    from newsletter.mail.transport import close_transports
    from newsletter.settings import Settings
    from newsletter.store.db import session_scope

    workdir = Path(tempfile.mkdtemp(prefix="nl-profile-"))
    with sink_process(workdir) as (port, _status, _pid), database(args.db, workdir) as url:
        seed(url, args.readers)
        settings = Settings(
            env="development",
            data_dir=workdir / "data",
            database_url=url,
            smtp_url=f"smtp://127.0.0.1:{port}",
            base_url="https://news.example.com/newsletter",
            bounce_address="bounces@news.example.com",
            secret_key="profile-secret-key-0123456789-abcdefghijklmnop",
        ).with_defaults()
        if args.dkim:
            key = dkim_key_file(workdir)
            settings = replace(
                settings,
                dkim_key_file=str(key),
                dkim_selector="bench",
                dkim_domain="news.example.com",
            )
        from newsletter import create_app

        app = create_app(settings)  # tasks run in the app context (templates, settings)
        context = app.app_context()
        context.push()
        queue = ListQueue()
        with session_scope(url) as db:
            newsletter = lifecycle.find_newsletter(db, "daily")
            issue = lifecycle.create_digest(db, settings, newsletter)
            db.commit()
            issue_id = issue.id
            lifecycle.send(db, settings, issue_id, queue)
        start = time.perf_counter()
        with session_scope(url) as db:
            fan_out(db, settings, issue_id, queue)
        fan_out_s = time.perf_counter() - start
        profile = cProfile.Profile()
        sent = 0
        cpu = time.process_time()
        start = time.perf_counter()
        while queue.batches:
            batch_issue, ids = queue.batches.pop(0)
            profile.enable()
            result = send_batch(settings, batch_issue, ids, queue=queue)
            profile.disable()
            sent += result.sent
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        close_transports()
        context.pop()
    print(
        f"{args.readers:,} readers on {args.db}, dkim {'on' if args.dkim else 'off'}: fan-out "
        f"{fan_out_s:.1f}s; {sent:,} sent in {elapsed:.1f}s under cProfile = "
        f"{cpu / max(1, sent) * 1000:.2f} CPU ms a mail (profiler overhead included)"
    )
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
