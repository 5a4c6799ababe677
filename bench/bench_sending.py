"""Sending throughput with pacing switched off: the engine's path against plain smtplib, same
sink, same connection policy (one STARTTLS + AUTH connection, verified TLS, reused for every
message), same run. Prints both rates, their ratio (goal: engine >= 0.85 x smtplib) and where
the engine's time goes (timers around plan, record + claim, compose and SMTP).

The sink is aiosmtpd with STARTTLS and AUTH that accepts and discards every message, in its
own process so that it does not share the interpreter (and its GIL) with the client measured.

Engine path, per round: a fresh launched one-step campaign of N leads on its own mailbox (gap
0, cap 10,000; every lead on its own domain, so the per-domain spread is checked but never
holds a message back), plan_due until everything is planned, then SendingEngine._work for the
mailbox, exactly the worker of `mailflow serve`: SMTP on one reused SmtpSession; while each
message's MAIL FROM waits for its reply, the worker's feed (send_feed.Feed) composes the next
message, and, when the batch is used up, records the sent ones and claims the next batch.
Each path's client CPU and the sink's CPU (from /proc) are printed per message: where cores
are scarce the ratio follows the CPU.
smtplib path: the same number of messages composed beforehand by the same builder, sent with
SMTP.sendmail over one connection. Each round runs both paths in S short alternating slices
(default 8; each slice its own connection and, for the engine, its own campaign and worker run)
in ABBA order, so that the load other processes put on the machine falls on both paths alike.

    .venv/bin/python bench/bench_sending.py [N] [ROUNDS] [--slices=S] [--latency-ms=MS]

--latency-ms delays the sink's reply to each DATA (default 0, the measurement the goal is about);
with a few milliseconds it shows the ratio against a server that is not on the same machine
(every round then takes N x the latency; use a smaller N).
"""

from __future__ import annotations

import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SINK_USER, SINK_PASSWORD = "sender@bench.test", "sink-password"


# --- the sink (runs as `bench_sending.py --sink TLS_DIR`) -----------------------------------------

def run_sink(tls_dir: str, latency: float) -> None:
    """Serve on 127.0.0.2 until stdin closes; print the port first and the message count last.
    `latency` (seconds) delays each reply to DATA, like a remote server's round trip and queueing."""
    import asyncio

    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

    from tests.support.certs import server_context
    from tests.support.loopback import HOST
    from tests.support.smtp_server import SMTP_HOSTNAME, LoopThread

    received = [0]

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            received[0] += 1
            if latency:
                await asyncio.sleep(latency)
            return "250 2.0.0 OK: discarded"

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (mechanism in ("LOGIN", "PLAIN") and isinstance(auth_data, LoginPassword)
              and auth_data.password.decode() == SINK_PASSWORD)
        return AuthResult(success=ok, handled=False)

    tls = server_context(Path(tls_dir))
    handler = Discard()

    def factory() -> SMTP:
        return SMTP(handler, hostname=SMTP_HOSTNAME, decode_data=False, tls_context=tls, require_starttls=True,
                    auth_required=True, auth_require_tls=True, authenticator=authenticate)

    loop = LoopThread("bench-sink")
    port = loop.listen(factory, HOST)
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    loop.stop()
    print(f"RECEIVED {received[0]}", flush=True)


class Sink:
    def __init__(self, tls_dir: Path, latency: float):
        self.proc = subprocess.Popen([sys.executable, __file__, "--sink", str(tls_dir), str(latency)],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=str(REPO))
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.port = int(line.split()[1])

    def cpu_seconds(self) -> float:
        """CPU the sink process has used so far (user + system, from /proc; 10 ms ticks)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """Stop the sink; the number of messages it accepted."""
        out, _ = self.proc.communicate(timeout=30)
        return int(out.strip().rsplit(" ", 1)[1])


# --- the benchmark ---------------------------------------------------------------------------------

def main(n: int, rounds: int, slices: int, latency_ms: float) -> None:
    from tests.support.mailstack import make_certs

    import sending_support as support

    app, principal, root = support.new_appliance()
    sink = None
    try:
        cafile = make_certs(root / "tls")
        sink = Sink(root / "tls", latency_ms / 1000)
        if latency_ms:
            print(f"the sink answers DATA after {latency_ms:g} ms (a stand-in for a remote server)")
        run(app, principal, n, rounds, slices, sink, cafile.read_text())
        accepted = sink.stop()
        sink = None
        print(f"sink accepted {accepted} messages in all")
    finally:
        if sink is not None:
            sink.proc.kill()
        app.close()
        shutil.rmtree(root, ignore_errors=True)


def run(app, principal, n: int, rounds: int, slices: int, sink: Sink, ca_pem: str) -> None:
    import sending_support as support
    from appliance.db import campaigns_repo, mailboxes_repo, messages_repo
    from appliance.mail import message as mime
    from appliance.mail.tls import TlsPolicy
    from appliance.services import planner, sender
    from appliance.services.engine import SendingEngine

    port = sink.port
    policy = sender.Policy()  # the default per-domain spread stays on; every lead has its own domain
    engine = SendingEngine(app, threads=1, policy=policy)
    serial = [0]

    def prepare(size: int) -> tuple[int, int]:
        """A draft one-step campaign of `size` fresh leads on a fresh mailbox: (campaign, mailbox)."""
        serial[0] += 1
        k = serial[0]
        box = support.add_mailbox(app, principal, f"sender{k}@bench.test", smtp_port=port, username=SINK_USER,
                                  password=SINK_PASSWORD, tls_ca_pem=ca_pem)
        leads = support.add_leads(app, [(f"lead{k}.{i}@co{k}x{i}.example", f"Lead{i}", f"Company {i}", "")
                                        for i in range(size)])
        campaign = support.new_campaign(app, principal, f"Bench {k}", [box])
        support.enroll(app, campaign, leads)
        return campaign, box

    def sent_count(campaign: int) -> int:
        return app.db.connection().execute("SELECT count(*) FROM messages WHERE campaign_id = ? AND status = 'sent'",
                                           (campaign,)).fetchone()[0]

    def engine_round(campaign: int, box: int) -> tuple[float, float, float]:
        """(wall seconds incl. planning, wall seconds of planning, CPU seconds)."""
        support.launch(app, principal, campaign)
        w, c = time.perf_counter(), time.process_time()
        while planner.plan_due(app.db):
            pass
        planned = time.perf_counter()
        engine._work(box)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        return wall, planned - w, cpu

    # The smtplib corpus: N messages built by the engine's own composer for N other leads.
    corpus_campaign, corpus_box = prepare(n)
    conn = app.db.connection()
    campaign_row = campaigns_repo.by_id(conn, corpus_campaign)
    steps = campaigns_repo.steps(conn, corpus_campaign)
    mailbox_row = mailboxes_repo.by_id(conn, corpus_box)
    leads = conn.execute("SELECT l.* FROM leads l JOIN enrollments e ON e.lead_id = l.id WHERE e.campaign_id = ?",
                         (corpus_campaign,)).fetchall()
    corpus = []
    now = datetime.now(timezone.utc)
    for lead in leads:
        fake = sender.Claimed(message={"step": 0, "to_email": lead["email"],
                                       "message_id": mime.new_message_id("bench.test")},
                              campaign=campaign_row, steps=steps, lead=lead, mailbox=mailbox_row, thread=[])
        raw, _, _ = sender.compose_message(app.db, app.keys, fake, policy, now)
        corpus.append((lead["email"], raw))
    tls = TlsPolicy(ca_pem=ca_pem)

    def smtplib_round(count: int) -> tuple[float, float]:
        w, c = time.perf_counter(), time.process_time()
        smtp = smtplib.SMTP("127.0.0.2", port, local_hostname="bench.test", timeout=20)
        smtp.ehlo()
        smtp.starttls(context=tls.context())
        smtp.ehlo()
        smtp.login(SINK_USER, SINK_PASSWORD)
        for to, raw in corpus[:count]:
            smtp.sendmail(mailbox_row["email"], [to], raw)
        smtp.quit()
        return time.perf_counter() - w, time.process_time() - c

    size = sum(len(raw) for _, raw in corpus) / len(corpus)
    per = max(1, n // slices)
    print(f"N = {per * slices} messages per path and round, {rounds} rounds of {slices} alternating slices "
          f"of {per} (ABBA order); average message {size:,.0f} bytes; sink in its own process")

    # warm-up (imports, caches, the sink's first connections): not counted
    warm_campaign, warm_box = prepare(min(200, n))
    engine_round(warm_campaign, warm_box)
    smtplib_round(min(200, n))

    # Both paths run in short alternating slices (engine, smtplib, smtplib, engine, ...), each slice
    # with its own connection, so that the load of everything else on the machine falls on both
    # alike; a round's ratio compares the sums of its slices.
    runs = [[prepare(per) for _ in range(slices)] for _ in range(rounds)]
    timed_run = prepare(n)
    ratios = []
    for r in range(rounds):
        totals = {"engine": [0.0, 0.0, 0.0, 0.0], "smtplib": [0.0, 0.0, 0.0, 0.0]}  # wall, planning, cpu, sink cpu
        for i, (campaign, box) in enumerate(runs[r]):
            order = ("engine", "smtplib") if (i + r) % 2 == 0 else ("smtplib", "engine")
            for path in order:
                sink_before = sink.cpu_seconds()
                if path == "engine":
                    wall, plan, cpu = engine_round(campaign, box)
                    got = sent_count(campaign)
                    if got != per:
                        print(f"  warning: the engine sent {got} of {per} in round {r + 1}")
                else:
                    (wall, cpu), plan = smtplib_round(per), 0.0
                for k, v in enumerate((wall, plan, cpu, sink.cpu_seconds() - sink_before)):
                    totals[path][k] += v
        count = per * slices
        (e_wall, e_plan, e_cpu, e_sink), (s_wall, _, s_cpu, s_sink) = totals["engine"], totals["smtplib"]
        ratio = s_wall / e_wall
        ratios.append(ratio)
        print(f"round {r + 1}: engine {count / e_wall:7.1f} msg/s (planning {e_plan:.2f} s of {e_wall:.2f} s; "
              f"client CPU {e_cpu * 1e6 / count:.0f} µs/msg, sink {e_sink * 1e6 / count:.0f}) | smtplib "
              f"{count / s_wall:7.1f} msg/s (client CPU {s_cpu * 1e6 / count:.0f} µs/msg, sink "
              f"{s_sink * 1e6 / count:.0f}) | ratio {ratio:.3f}")
    print(f"ratio engine/smtplib, median of {rounds} rounds: {statistics.median(ratios):.3f}  (goal >= 0.85)")

    # Where the engine's time goes: timers around each stage (a separate, untimed-for-ratio round).
    # Composing, recording and claiming run inside the SMTP send's wait for the MAIL FROM reply:
    # the SMTP stage's times include them.
    campaign, box = timed_run
    timers = support.Timers()
    from appliance.mail import smtp as smtp_module
    from appliance.services import compose
    targets = [(sender, "record_and_claim", "record + claim (1 transaction)"),
               (sender, "compose_message", "compose (render + MIME)"),
               (compose, "render_step", "  of which render_step"), (mime, "build", "  of which MIME build"),
               (smtp_module.SmtpSession, "send", "SMTP MAIL/RCPT/DATA (incl. the above)"),
               (planner, "plan_due", "plan_due")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]
    for owner, name, label in targets:
        setattr(owner, name, timers.wrap(label, getattr(owner, name)))
    engine._connect = timers.wrap("connect (credentials + TLS + AUTH)", engine._connect)
    try:
        wall, _, _ = engine_round(campaign, box)
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)
        del engine._connect
    print(f"\nwhere the engine's time goes ({n} messages, {wall:.2f} s wall, {n / wall:.1f} msg/s with timers):")
    timers.report(wall, n, ["plan_due", "connect (credentials + TLS + AUTH)", "SMTP MAIL/RCPT/DATA (incl. the above)",
                            "record + claim (1 transaction)", "compose (render + MIME)",
                            "  of which render_step", "  of which MIME build"])
    _, s_cpu = smtplib_round(n)
    print(f"  for comparison, smtplib's whole client CPU: {s_cpu * 1e6 / n:.0f} µs/msg")

    total = sum(sent_count(c) for c, _ in [timed_run] + [pair for round_ in runs for pair in round_])
    print(f"\nengine rounds sent {total} of {(rounds * slices * per) + n} messages; "
          f"{len(messages_repo.in_status(app.db.connection(), 'failed'))} failed")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--sink":
        run_sink(sys.argv[2], float(sys.argv[3]))
    else:
        latency = next((float(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--latency-ms=")), 0.0)
        args = [a for a in sys.argv[1:] if not a.startswith("--")]
        slices = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--slices=")), 8)
        main(int(args[0]) if args else 2000, int(args[1]) if len(args) > 1 else 3, slices, latency)
