"""The crash test, long: `veivis run` under repeated SIGKILL and 30% provider faults.

    python bench/chaos.py [--seed 1] [--writers 120] [--readers 10] [--rate 25]
                          [--faults 0.3] [--kinds 500,503,429,timeout,hang]
                          [--kills 10] [--kill-gap 4] [--no-callbacks] [--code PATH]

Two plans run side by side, each against its own fake Twilio on loopback and each compared
with a crash-free replay of the same traffic (tests/chaos.py says how):

1. many phones at `--rate` SMS/s: `--writers` young people writing (welcome, consent, HJELP,
   STOPP/START, SPRÅK, messages to their veileder, SLETT), `--readers` first meetings a
   veileder registers by SMS (preparation, and a reminder that falls due during the run);
2. the default rate (SMS_RATE=1): three writers and two meetings.

The fake fails `--faults` of the sends and of the lookups: 500, 503, 429 with Retry-After,
no answer (not accepted), and accepted-then-hang (accepted, the answer comes after the
client's timeout). The process is SIGKILLed `--kills` times (the first during intake), then
restarted on the same database; Twilio-style webhook retries and 5% deliberate duplicate
webhooks. `--code PATH` runs another checkout's Veivis under chaos (the replay always runs
this one): how the crash test was shown to catch a sender that claims early or resends after
a timeout.

The last line is `lost=… unsent=… dup=…`, summed over both plans:
- lost: acknowledged webhooks never processed, or messages the replay sent that never
  reached the phone (not counted as unsent);
- unsent: outbox rows that ended failed or never sent (a message marked failed although it
  was never handed over counts here);
- dup: messages the fake accepted beyond the replay's (the same SMS twice).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos import Outcome, Plan, Verdict, chaos_and_replay  # noqa: E402
from tests.fakes import ALL_FAULTS  # noqa: E402


def report(name: str, plan: Plan, out: Outcome, replay: Outcome, v: Verdict) -> None:
    during = sum(k.intake for k in out.kills)
    waiting = sum(1 for k in out.kills if k.unsent)
    sends = sum(out.faults.values())
    failed = sends - out.faults.get("ok", 0)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(out.faults.items()) if k != "ok")
    webhooks = sum(len(s) for s in out.acknowledged.values())
    print(f"{name}: seed {plan.seed}, {plan.writers} writing, {plan.readers} meetings, "
          f"SMS_RATE={plan.rate:g}, {len(out.kills)} SIGKILLs ({during} during intake, "
          f"{waiting} with messages waiting or in flight)")
    print(f"  chaos {out.seconds:.0f} s, replay {replay.seconds:.0f} s; {webhooks} webhooks "
          f"acknowledged; {len(out.rows)} outbox rows; {len(out.log)} SMS accepted by the fake")
    print(f"  sends tried {sends}, failed {failed} ({failed / max(1, sends):.0%}: {kinds}); "
          f"lookups {out.lookups}")
    facts = ", ".join(f"{k} {n}" for k, n in out.facts.items())
    print(f"  traffic: {facts}")
    tracebacks = out.stderr.count("Traceback")
    print(f"  {v.line()} failed-without-reason={v.failed_without_reason} "
          f"differing-phones={len(v.different)} tracebacks={tracebacks}"
          + (f" notes={out.notes}" if out.notes else ""))
    for who in v.different[:3]:
        print(f"    {who}: got {len(out.texts.get(who, []))} messages, replay "
              f"{len(replay.texts.get(who, []))}")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--writers", type=int, default=120)
    ap.add_argument("--readers", type=int, default=10)
    ap.add_argument("--rate", type=float, default=25)
    ap.add_argument("--faults", type=float, default=0.3)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--kill-gap", type=float, default=4.0)
    ap.add_argument("--kinds", default=",".join(ALL_FAULTS),
                    help="how the fake fails: " + ", ".join(ALL_FAULTS))
    ap.add_argument("--no-callbacks", action="store_true",
                    help="the fake sends no status callbacks: sends in doubt are settled by "
                    "asking Twilio's message list alone")
    ap.add_argument("--code", type=Path, default=None,
                    help="run this checkout's Veivis under chaos (the replay runs ours)")
    args = ap.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    plans = {
        "many phones": Plan(seed=args.seed, writers=args.writers, readers=args.readers,
                            rate=args.rate, faults=args.faults, kinds=kinds,
                            callbacks=not args.no_callbacks, kills=args.kills,
                            kill_gap=args.kill_gap, deadline=1800),
        "default rate": Plan(seed=args.seed + 1, writers=3, readers=2, rate=1,
                             faults=args.faults, kinds=kinds, callbacks=not args.no_callbacks,
                             kills=max(2, args.kills // 2) if args.kills else 0,
                             kill_gap=5.0, deadline=1800),
    }
    with tempfile.TemporaryDirectory() as d:
        results = await asyncio.gather(*(chaos_and_replay(p, Path(d) / str(i), args.code)
                                         for i, p in enumerate(plans.values())))
    total = Verdict()
    for (name, plan), (out, replay, v) in zip(plans.items(), results, strict=True):
        report(name, plan, out, replay, v)
        total.lost += v.lost
        total.unsent += v.unsent
        total.dup += v.dup
    print(total.line())


if __name__ == "__main__":
    asyncio.run(main())
