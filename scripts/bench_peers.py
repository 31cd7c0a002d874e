#!/usr/bin/env python3
"""Peers side by side (#30): the bridge a user would pick instead of hookbridge, measured in
the same run with the same load generator, brokers and pinning (scripts/bench.py's `peers`
scenario).

    python3 scripts/bench.py quick peers         # every peer scenario
    python3 scripts/bench.py quick peers,nats    # the peer scenarios of these brokers only
    python3 scripts/bench_peers.py report bench/results/<run>.json   # the table of a run

Each peer is installed by `scripts/peers/<peer>.sh` (idempotent, into a cache outside the
repository; prints the binary's path last) and configured from `bench/peers/<peer>/*.yaml` for
its strongest delivery guarantee. Per scenario, hookbridge (the matching configuration: sync
mode to the broker, or the blackhole sink) and the peer each run as the server under test on
bench.SERVER_CORE with the generator and brokers on the other core, each to a stream, queue or
topic of its own made by `hookbridge-load setup`, and each gets exactly the same requests:
`hookbridge-load load --body-id`, a binary-mode CloudEvent whose body `{"id":…,"data":{}}`
carries the event id, since a peer need not carry the request's headers to the broker. The
no-loss check reads every 2xx'd id back from that body (`readback --body-id`).

A peer that cannot be installed or started is recorded as skipped, with the reason, and the
report shows it.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER_PORT = 18083
GOAL_CPU_RATIO = 1.25

# scenario -> (broker for setup/readback or None, hookbridge's config, the env key of hookbridge's
# sink target); each peer names its own configuration file per scenario (PEERS[…]["templates"])
SCENARIOS = {
    "nats": ("nats", "bench/configs/nats-sync.toml", "SUBJECT"),
    "kafka": ("kafka", "bench/configs/kafka-sync.toml", "TOPIC"),
    "rabbitmq": ("rabbitmq", "bench/configs/rabbitmq-sync.toml", "ROUTING_KEY"),
    "null": (None, "bench/configs/ce-blackhole.toml", None),
}
LABELS = {
    "nats": "HTTP → NATS JetStream (acks)",
    "kafka": "HTTP → Kafka acks=all",
    "rabbitmq": "HTTP → RabbitMQ (publisher confirms)",
    "null": "HTTP → blackhole / null",
}
HOOKBRIDGE_SETTINGS = {
    "nats": "sync: 2xx after the JetStream PubAck",
    "kafka": "sync: 2xx after the delivery report, acks=all, idempotent",
    "rabbitmq": "sync: 2xx after the publisher confirm, persistent, mandatory",
    "null": "blackhole sink",
}

PEERS = {
    "mq-bridge-app": {
        "version": "1.3.0",
        "origin": "crates.io",
        "features": "http,nats,kafka,amqp,mimalloc (--no-default-features)",
        "common": "HTTP input fire_and_forget: false (202 only after the route's Ack; 500 on Nack); "
                  "concurrency 4, batch_size 1024 (the app's defaults); required_delivery: at_least_once",
        "settings": {
            "nats": "JetStream, delayed_ack: false (each publish awaits its PubAck), deduplicate: true (Nats-Msg-Id)",
            "kafka": "delayed_ack: false (each delivery report awaited), acks=all, enable.idempotence=true",
            "rabbitmq": "publisher confirms awaited (delayed_ack: false), persistent (delivery mode 2, durable queue), mandatory",
            "null": "`output: null` (discards)",
        },
        "templates": {"nats": "nats.yaml", "kafka": "kafka.yaml", "rabbitmq": "rabbitmq.yaml", "null": "null.yaml"},
        "command": lambda binary, config: [binary, "--config", str(config), "--no-ui", "--no-metrics", "--color", "never"],
        "env": {"RUST_LOG": "warn", "NO_COLOR": "1"},
    },
    # Built from source by scripts/peers/vector.sh (v0.57.0; see bench/peers/vector/README.md for
    # each sink's acknowledgement, with the functions in Vector's source that say so).
    "vector": {
        "version": "0.57.0",
        "origin": "built from its source repository, tag v0.57.0",
        "features": "sources-http_server, sinks-blackhole, sinks-nats, sinks-kafka, sinks-amqp (--no-default-features; "
                    "thin LTO, 16 codegen units)",
        "common": "http_server source, body kept as bytes; end-to-end acknowledgements on the sink (the HTTP answer "
                  "waits for the sink: 200 delivered, 400 rejected, 500 errored)",
        "settings": {
            "nats": "jetstream = true (each publish awaits its PubAck), request.concurrency 256; errors retried "
                    "without end (a missing stream hangs the request)",
            "kafka": "acks=all, enable.idempotence=true (librdkafka_options); the delivery report awaited",
            "rabbitmq": "publisher confirms awaited, 64 channels; **weaker**: not persistent, not mandatory (an "
                        "unroutable message is confirmed and dropped)",
            "null": "blackhole sink",
        },
        "templates": {"nats": "nats.toml", "kafka": "kafka.toml", "rabbitmq": "amqp.toml", "null": "blackhole.toml"},
        "command": lambda binary, config: [binary, "--config", str(config), "--quiet"],
        "env": {"VECTOR_LOG": "warn", "NO_COLOR": "1"},
    },
}


def _bench():
    """scripts/bench.py's helpers: the running `__main__` when bench.py is the script (so its
    state is the one in use), else the module (imported here, lazily: bench imports us)."""
    main = sys.modules.get("__main__")
    if main is not None and Path(getattr(main, "__file__", "") or "").name == "bench.py":
        return main
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench  # noqa: E402  (lazy on purpose)
    return bench


def install(peer):
    """Runs scripts/peers/<peer>.sh; returns (binary, None, seconds) or (None, reason, seconds)."""
    script = ROOT / f"scripts/peers/{peer}.sh"
    t0 = time.time()
    try:
        out = subprocess.run(["bash", str(script)], cwd=ROOT, capture_output=True, text=True)
    except OSError as e:
        return None, f"{script.name}: {e}", time.time() - t0
    seconds = time.time() - t0
    lines = out.stdout.strip().splitlines()
    last = lines[-1] if lines else (out.stderr.strip().splitlines() or ["no output"])[-1]
    if out.returncode != 0:
        return None, last, seconds
    if not Path(last).is_file():
        return None, f"{script.name} printed {last!r}, which is no file", seconds
    return last, None, seconds


def fill(template, values, out):
    text = template.read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", v)
    if "{{" in text:
        raise RuntimeError(f"{template.name}: a placeholder was left unfilled")
    out.write_text(text)
    return out


def start_peer(b, cmd, port, env, log_path, timeout=30):
    """The peer as bench.Server (pinned to bench.SERVER_CORE), with its own log; a peer that
    exits or never listens raises with the log's last line and leaves no process behind."""
    srv = b.Server.__new__(b.Server)
    srv.port = port
    srv.log = open(log_path, "a")
    srv.proc = subprocess.Popen(["taskset", "-c", b.SERVER_CORE] + cmd, cwd=ROOT, env={**os.environ, **env},
                                stdout=srv.log, stderr=srv.log)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if srv.proc.poll() is not None:
            break
        try:
            b.wait_port(port, timeout=0.5)
            return srv
        except RuntimeError:
            pass
    srv.stop()
    tail = [l for l in Path(log_path).read_text(errors="replace").splitlines() if l.strip()][-1:] or ["(empty log)"]
    raise RuntimeError(f"did not listen on {port} (exit {srv.proc.returncode}): {tail[0][:300]}")


def one(b, mode, stamp, scenario, who, start, load_args):
    """One server for one scenario: its own stream/queue/topic, warm-up, bench.measure, read-back."""
    broker, *_ = SCENARIOS[scenario]
    url = {"nats": b.NATS, "rabbitmq": b.AMQP, "kafka": b.KAFKA}.get(broker)
    tag = "hb" if who == "hookbridge" else who.replace("-", "")
    name = f"hbbench_peer_{tag}_{scenario}_{stamp}".replace("-", "_")
    subject = f"hbbench.{stamp}.peer{tag}"
    target = name.upper() if broker == "nats" else name
    ids = ROOT / f"target/bench/{name}.ids"
    if broker:
        b.gen(["setup", "--broker", broker, "--url", url, "--target", target, "--subject", subject])
    srv = None
    try:
        srv = start({"target": target, "subject": subject, "name": name})
        # Warm-up outside the clock (connections, producer ids, stream lookups), for both sides.
        b.gen(load_args + ["--duration", "1s", "--connections", "4", "--pool", "500", "--id-prefix", f"{name}-warm"])
        # Both sides wait for the broker's acknowledgement: both get the in-flight counts of
        # the sync runs and direct clients (the better kept).
        r = b.measure(srv, load_args, mode, name, ids if broker else None,
                      connections=b.DIRECT_INFLIGHT if broker else None)
        srv.stop()
        srv = None
        if broker:
            r["readback"] = b.readback(broker, url, target, ids, r["id_parts"], body_id=True)
            r["valid"] = r["valid"] and r["readback"]["no_loss"]
        return r
    finally:
        if srv:
            srv.stop()
        if broker:
            b.gen(["setup", "--broker", broker, "--url", url, "--target", target, "--remove"])


def run(mode, stamp, sc, only=None):
    """Fills sc["peers"] = {peer: {scenario: result}}; a skipped peer is {"skipped": reason},
    a skipped scenario {"skipped": reason}. `only`: bench.py's wanted scenarios; when it names
    brokers, only their peer scenarios run (and `null` only when no broker is named)."""
    b = _bench()
    named = [s for s in ("nats", "rabbitmq", "kafka") if only and s in only]
    scenarios = named or list(SCENARIOS)
    peers = sc.setdefault("peers", {})
    load_common = ["load", "--config", "bench/configs/ce-blackhole.toml", "--source", "events", "--body-id"]
    for peer, spec in PEERS.items():
        b.log(f"peers: installing {peer}")
        binary, reason, seconds = install(peer)
        if reason:
            b.log(f"peers: {peer} skipped: {reason}")
            peers[peer] = {"skipped": reason, "install_seconds": seconds}
            continue
        entry = peers[peer] = {"binary": binary, "install_seconds": seconds, "version": spec["version"],
                               "features": spec["features"], "common_settings": spec["common"]}
        for scenario in scenarios:
            broker, hb_config, key = SCENARIOS[scenario]
            template = spec["templates"][scenario]
            res = {"settings": spec["settings"][scenario], "hookbridge_settings": HOOKBRIDGE_SETTINGS[scenario]}
            entry[scenario] = res

            def hb_start(t, hb_config=hb_config, key=key, broker=broker):
                env = {"HOOKBRIDGE_SPOOL__DIR": str(ROOT / f"target/bench/spool-{t['name']}")}
                if key:
                    env[f"HOOKBRIDGE_SINKS__BROKER__{key}"] = f"{t['subject']}.{{type}}" if broker == "nats" else t["target"]
                return b.hookbridge(hb_config, env)

            def peer_start(t, template=template, scenario=scenario):
                cfg = fill(ROOT / f"bench/peers/{peer}/{template}", {
                    "LISTEN": f"127.0.0.1:{PEER_PORT}", "NATS_URL": b.NATS, "AMQP_URL": b.AMQP, "KAFKA_URL": b.KAFKA,
                    "SUBJECT": f"{t['subject']}.events", "STREAM": t["target"], "TOPIC": t["target"], "QUEUE": t["target"],
                }, ROOT / f"target/bench/{t['name']}{Path(template).suffix}")
                return start_peer(b, spec["command"](binary, cfg), PEER_PORT, spec["env"],
                                  ROOT / f"target/bench/{t['name']}.log")

            # hookbridge first, then the peer, back to back: one run, one machine state.
            for who, start, args in (
                ("hookbridge", hb_start, load_common + ["--url", "http://127.0.0.1:18080/events"]),
                (peer, peer_start, load_common + ["--url", f"http://127.0.0.1:{PEER_PORT}/events"]),
            ):
                b.log(f"peers: {scenario}: {who}")
                try:
                    res["hookbridge" if who == "hookbridge" else "peer"] = one(b, mode, stamp, scenario, who, start, args)
                except Exception as e:  # a peer that fails is a finding, not a crash of the run
                    b.log(f"peers: {scenario}: {who} skipped: {e}")
                    res["hookbridge" if who == "hookbridge" else "peer"] = {"skipped": str(e)}
            h, p = res.get("hookbridge", {}), res.get("peer", {})
            if "rate" in h and "rate" in p and h["cpu_us_per_event"] > 0:
                # hookbridge's events per CPU-second over the peer's = the peer's CPU-µs per event over hookbridge's.
                res["cpu_ratio"] = p["cpu_us_per_event"] / h["cpu_us_per_event"]
                res["cpu_ratio_met"] = res["cpu_ratio"] >= GOAL_CPU_RATIO
                res["rss_met"] = h["peak_rss_mib"] <= p["peak_rss_mib"]
    return sc["peers"]


def _lat(r):
    l = r["latency_at_half"]
    return f"{l['p50_us'] / 1000:.2f} / {l['p99_us'] / 1000:.2f}"


def _row(peer, scenario, settings, r, compare):
    if "skipped" in r:
        return f"| {peer} | {scenario} | {settings} | skipped: {r['skipped']} | | | | | | |"
    rb = r.get("readback")
    loss = "—" if rb is None else ("yes" if rb["no_loss"] else f"**NO** ({rb['missing']} missing)")
    return (f"| {peer} | {scenario} | {settings} | {r['rate']:,.0f} | {r['cpu_us_per_event']:.1f} | {_lat(r)} | "
            f"{r['peak_rss_mib']:.1f} | {loss} | {'valid' if r['valid'] else '**invalid**'} | {compare} |")


def report(sc):
    """Markdown lines: each peer scenario next to hookbridge's row from the same run."""
    peers = sc.get("peers")
    if not peers:
        return []
    met = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    lines = ["## Peers side by side", ""]
    for peer, e in peers.items():
        if "skipped" in e:
            lines += [f"**{peer}: skipped** — {e['skipped']}", ""]
            continue
        lines += [
            f"**{peer} {e['version']}** ({PEERS.get(peer, {}).get('origin', '?')}; features {e['features']}; built by `scripts/peers/{peer}.sh`, "
            f"{e['install_seconds']:.0f} s this run). Common settings: {e['common_settings']}. Configurations: "
            f"`bench/peers/{peer}/`. Each scenario ran hookbridge then the peer back to back on the server core, "
            "each to its own stream/queue/topic, with the same requests (binary-mode CloudEvent, id also in the body); "
            "no loss = every 2xx'd id read back from the broker by the body's id. Ratio = hookbridge's events per "
            f"CPU-second ÷ the peer's (goal ≥ {GOAL_CPU_RATIO}); RSS goal: hookbridge's peak ≤ the peer's.",
            "",
            "| server | scenario | guarantee settings | events/s | CPU-µs/event | p50 / p99 ms at 50 % | peak RSS MiB | no loss | run | hookbridge vs peer |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for scenario in SCENARIOS:
            r = e.get(scenario)
            if r is None:
                continue
            label = LABELS[scenario]
            compare = "—"
            if "cpu_ratio" in r:
                compare = (f"{r['cpu_ratio']:.2f} (≥ {GOAL_CPU_RATIO} {met(r['cpu_ratio_met'])}); "
                           f"RSS ≤ peer's {met(r['rss_met'])}")
            lines.append(_row(peer, label, r["settings"], r.get("peer", {"skipped": "not run"}), "—"))
            lines.append(_row("hookbridge", label, r["hookbridge_settings"], r.get("hookbridge", {"skipped": "not run"}), compare))
        lines.append("")
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "report":
        data = json.loads(Path(sys.argv[2]).read_text())
        print("\n".join(report(data.get("scenarios", data))))
    else:
        sys.exit(__doc__)
