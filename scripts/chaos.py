#!/usr/bin/env python3
"""Chaos on the test cluster, while TASKs flow and the jobs run, then the books checked.

    scripts/chaos.py --node NODE_SERVICE_IP [--minutes 3] [--seed N]

Run from the README's Kubernetes section (it reads the environment of $CLUSTER/env and
$CLUSTER/servers.env). For --minutes, three validators send TASKs through the node's Service
(each retried until answered SUCCESS, as validators do), the jobs run on their every-minute
schedules, and at random moments one of these happens, each at least once:

  node-pod       a node pod killed: SIGKILL to its containers, the pod deleted with no grace period
  job-pod        a running rewards or payouts Job's pod killed so, mid-run
  operator-pod   the operator's pod killed so
  db-freeze      the MongoDB-compatible server stopped (SIGSTOP) for 3-6 s, then continued
  chain-down     the chain down for 20 s from 3 s before a minute (when the jobs start): 500 to
                 everything, a pushed payout taken but answered 500
  evict-two      the Eviction API asked for two node pods at once: the budget refuses the second

Then, with everything settled, it checks and exits non-zero on the first failure:
  - each pool's score is exactly its SUCCESS replies times the validator's increment (decay is
    suspended while the TASKs are counted; every pool stays below the score cap of 100, so a
    TASK counted twice would show); a TASK never answered SUCCESS may count once or not at all;
  - the MinerPool is Ready with its replicas, the operator's Lease is held by a running pod;
  - no payout batch is left in flight, no job lock is held once the jobs are suspended, and
    `minerpool-job audit` passes;
  - for every recipient, what the chain's blocks pay it from the iNode wallet equals `paid`.
It prints one table of what happened.
"""

import argparse
import calendar
import datetime
import glob
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal

try:
    import pymongo
except ImportError:
    # The MongoDB-compatible server's own virtualenv carries the driver.
    cache = os.environ.get("MINERPOOL_CACHE", os.path.expanduser("~/.cache/minerpool"))
    pythons = sorted(glob.glob(f"{cache}/secantusdb-*/bin/python"))
    if not pythons or os.environ.get("MINERPOOL_CHAOS_REEXEC"):
        sys.exit("chaos: pymongo is not installed (run scripts/mongo-test-server.sh install)")
    os.environ["MINERPOOL_CHAOS_REEXEC"] = "1"
    os.execv(pythons[-1], [pythons[-1], *sys.argv])

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOL_LABELS = "app.kubernetes.io/instance=local"
JOBS = ("rewards", "validators", "payouts", "decay")
KINDS = ("node-pod", "job-pod", "operator-pod", "db-freeze", "chain-down", "evict-two")
# Pools stay below the cap so that every increment shows in the score.
SCORE_CAP = 100
UNITS_PER_COIN = 10**8
FINAL_BATCH_STATES = {"confirmed", "failed", "abandoned", "simulated"}


def log(message):
    print(f"{time.strftime('%H:%M:%S')} chaos: {message}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


def run(*args, check_status=True, input_text=None):
    done = subprocess.run(args, capture_output=True, text=True, input=input_text)
    if check_status and done.returncode != 0:
        raise Failed(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def kubectl(*args, **kw):
    return run("kubectl", *args, **kw).stdout


def kubectl_json(*args):
    return json.loads(kubectl(*args, "-o", "json"))


def http(method, url, body=None, token=None, timeout=15):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        text = answer.read().decode()
    return json.loads(text, parse_float=Decimal) if text.strip() else None


def wait_for(what, seconds, probe):
    """Polls probe() until it returns a true value; fails after `seconds`."""
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (Failed, OSError, urllib.error.URLError, ValueError, KeyError) as error:
            last = error
        time.sleep(2)
    raise Failed(f"{what}: not within {seconds} s (last: {last})")


def units(coins):
    return int(Decimal(str(coins)) * UNITS_PER_COIN)


class Cluster:
    def __init__(self, node_ip):
        self.api_url = f"http://{node_ip}:8001/api/v1"
        self.ws_url = f"ws://{node_ip}:5501"
        self.token = os.environ["ADMIN_TOKEN"]
        self.chain = os.environ["CHAIN_URL"]
        self.cluster_dir = os.environ["CLUSTER"]

    def api(self, path):
        return http("GET", f"{self.api_url}{path}", token=self.token)

    def balance(self, address):
        """An address's balance; one the ledger never credited has paid nothing."""
        try:
            return self.api(f"/balances/{address}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return {"paid": "0"}
            raise

    def node_pods(self, ready_only=True):
        pods = kubectl_json("get", "pods", "-l", f"{POOL_LABELS},app.kubernetes.io/component=node")
        found = []
        for pod in pods["items"]:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            ready = any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in pod["status"].get("conditions", [])
            )
            if ready or not ready_only:
                found.append(pod["metadata"]["name"])
        return found

    def patch_jobs(self, suspend, jobs):
        patch = {"spec": {"jobs": {job: {"suspend": suspend} for job in jobs}}}
        kubectl("patch", "mp/local", "--type", "merge", "-p", json.dumps(patch))

    def active_jobs(self, jobs):
        found = kubectl_json("get", "jobs", "-l", POOL_LABELS)["items"]
        return [
            j["metadata"]["name"]
            for j in found
            if j["metadata"]["labels"].get("app.kubernetes.io/component") in jobs
            and not j["status"].get("completionTime")
            and not j["status"].get("failed")
        ]

    def new_wallet(self):
        binary = os.path.join(os.environ.get("CARGO_TARGET_DIR", f"{ROOT}/target"), "debug", "chain-sim")
        return run(binary, "--new-wallet").stdout.split()[1]


# ---------------------------------------------------------------------------------------------
# The disruptions


class Chaos:
    def __init__(self, cluster, rng):
        self.cluster = cluster
        self.rng = rng
        self.counts = {kind: 0 for kind in KINDS}
        self.evictions = {"allowed": 0, "refused": 0}

    def do(self, kind):
        log(f"{kind}")
        getattr(self, kind.replace("-", "_"))()
        self.counts[kind] += 1

    def kill(self, namespace, pod):
        """SIGKILL to the pod's containers (a crash: nothing runs its shutdown), then the pod
        deleted with no grace period. A deletion alone would still let the kubelet stop the
        containers with SIGTERM and their own grace."""
        containers = run(
            "docker", "ps", "-q", "--filter", f"label=io.kubernetes.pod.name={pod}",
            "--filter", f"label=io.kubernetes.pod.namespace={namespace}",
        ).stdout.split()
        if containers:
            run("docker", "kill", "--signal", "KILL", *containers, check_status=False)
        kubectl("-n", namespace, "delete", "pod", pod, "--grace-period=0", "--force", "--wait=false")
        log(f"  killed {namespace}/{pod} ({len(containers)} containers)")

    def node_pod(self):
        pods = self.cluster.node_pods(ready_only=False)
        check(pods, "no node pod to kill")
        self.kill("default", self.rng.choice(pods))

    def job_pod(self):
        # A run lasts a couple of seconds from the minute on: watch the runtime itself (quicker
        # to ask than the API server) for a rewards or payouts container.
        deadline = time.time() + 150
        while time.time() < deadline:
            running = run(
                "docker", "ps", "--filter", "label=io.kubernetes.container.name=job",
                "--filter", "label=io.kubernetes.pod.namespace=default",
                "--format", '{{.Label "io.kubernetes.pod.name"}}',
            ).stdout.split()
            pods = [p for p in running if p.startswith(("local-rewards-", "local-payouts-"))]
            if pods:
                self.kill("default", self.rng.choice(pods))
                return
            time.sleep(0.1)
        raise Failed("no rewards or payouts container was seen running within 150 s")

    def operator_pod(self):
        pods = kubectl_json("-n", "minerpool", "get", "pods", "-l", "app.kubernetes.io/name=minerpool-operator")
        running = [p["metadata"]["name"] for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
        check(running, "no operator pod to kill")
        for pod in running:
            self.kill("minerpool", pod)

    def db_freeze(self):
        with open(os.path.join(self.cluster.cluster_dir, "mongo", "pid")) as f:
            pid = int(f.read().strip())
        seconds = self.rng.uniform(3, 6)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        log(f"  frozen {seconds:.1f} s")

    def chain_down(self):
        # The jobs start on the minute: a window from a few seconds before it catches their runs.
        time.sleep((57 - time.time() % 60) % 60)
        chain = self.cluster.chain
        http("POST", f"{chain}/sim/down", {"seconds": 20})
        try:
            time.sleep(20)
        finally:
            http("DELETE", f"{chain}/sim/down")

    def evict_two(self):
        def allowed():
            budget = kubectl_json("get", "pdb", "local-node")
            return budget.get("status", {}).get("disruptionsAllowed") == 1

        wait_for("the budget to allow one disruption", 120, allowed)
        pods = self.cluster.node_pods()[:2]
        check(len(pods) == 2, f"fewer than two node pods to evict: {pods}")
        outcomes = []
        for pod in pods:
            eviction = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": pod}}
            done = run(
                "kubectl", "create", "--raw", f"/api/v1/namespaces/default/pods/{pod}/eviction", "-f", "-",
                check_status=False, input_text=json.dumps(eviction),
            )
            outcomes.append((pod, done.returncode == 0, (done.stderr or done.stdout).strip()))
        log(f"  evictions: {[(p, 'allowed' if ok else 'refused') for p, ok, _ in outcomes]}")
        check(outcomes[0][1], f"the first eviction was refused: {outcomes[0][2]}")
        check(not outcomes[1][1], "the budget let a second node pod be evicted at once")
        check("disruption budget" in outcomes[1][2], f"the refusal does not name the budget: {outcomes[1][2]}")
        self.evictions["allowed"] += 1
        self.evictions["refused"] += 1


# ---------------------------------------------------------------------------------------------
# The TASKs


def increment(percentage):
    """What one TASK adds to a pool's score (core/src/scoring.rs): max(1, ceil(hundredths/500))."""
    hundredths = int((Decimal(percentage) * 100).to_integral_value(rounding="ROUND_HALF_UP"))
    return max(1, -(-hundredths // 500))


def start_loads(cluster, seconds, rate_per_validator):
    """One validator-load per validator, its TASKs spread over pools of its own, each pool
    getting fewer TASKs than would reach the score cap."""
    loads = []
    for n, validator in enumerate(
        [os.environ["VALIDATOR_1"], os.environ["VALIDATOR_2"], os.environ["VALIDATOR_3"]], start=1
    ):
        percentage = cluster.api(f"/validators/{validator}")["percentage"]
        step = increment(percentage)
        per_pool = (SCORE_CAP - 1) // step
        tasks = int(seconds * rate_per_validator)
        pools = [cluster.new_wallet() for _ in range(math.ceil(tasks / per_pool))]
        for pool in pools:
            http("POST", f"{cluster.api_url}/pools", {"address": pool}, token=cluster.token)
        out = os.path.join(cluster.cluster_dir, f"chaos-load-{n}.json")
        args = ["validator-load", "--url", cluster.ws_url, "--validator", validator,
                "--prefix", f"chaos-{n}-{int(time.time())}", "--tasks", str(tasks),
                "--per-second", str(rate_per_validator), "--concurrency", "8",
                "--retry", "--give-up-seconds", "600"]
        for pool in pools:
            args += ["--pool", pool]
        process = subprocess.Popen(args, stdout=open(out, "w"), stderr=subprocess.DEVNULL)
        loads.append({"validator": validator, "increment": step, "pools": pools, "out": out,
                      "process": process, "tasks": tasks})
        log(f"validator {n}: {tasks} TASKs to {len(pools)} pools, {step} a TASK")
    return loads


def check_scores(cluster, loads):
    totals = {"sent": 0, "succeeded": 0, "unanswered": 0, "retries": 0}
    for load in loads:
        with open(load["out"]) as f:
            summary = json.load(f)
        totals["sent"] += summary["tasks"]
        totals["succeeded"] += summary["succeeded"]
        totals["unanswered"] += summary["failed"]
        totals["retries"] += summary["retries"]
        for pool in load["pools"]:
            counts = summary["byPool"].get(pool, {"succeeded": 0, "failed": 0})
            score = int(cluster.api(f"/pools/{pool}")["score"])
            low = counts["succeeded"] * load["increment"]
            high = (counts["succeeded"] + counts["failed"]) * load["increment"]
            check(
                low <= score <= high,
                f"pool {pool} scored {score}; its {counts['succeeded']} SUCCESS replies of "
                f"{load['increment']} each make {low}"
                + (f" (up to {high} with the {counts['failed']} unanswered)" if counts["failed"] else ""),
            )
    return totals


# ---------------------------------------------------------------------------------------------
# Settling and the books


def settle(cluster, chaos_end):
    wait_for("three node pods Ready", 300, lambda: len(cluster.node_pods()) == 3)
    wait_for("the MinerPool Ready with 3 ready replicas", 300, lambda: kubectl(
        "get", "mp", "local", "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.node.readyReplicas}",
    ).strip() == "True 3")

    def lease_held():
        holder = kubectl("-n", "minerpool", "get", "lease", "minerpool-operator", "-o",
                         "jsonpath={.spec.holderIdentity}").strip()
        pods = kubectl_json("-n", "minerpool", "get", "pods", "-l",
                            "app.kubernetes.io/name=minerpool-operator")["items"]
        running = [p["metadata"]["name"] for p in pods
                   if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        return holder in running and holder

    holder = wait_for("the operator's Lease held by a running operator pod", 180, lease_held)

    def succeeded_since(job):
        runs = cluster.api(f"/job-runs?job={job}&limit=20")["jobRuns"]
        return any(r["outcome"] == "succeeded" and parse_time(r["startedAt"]) >= chaos_end for r in runs)

    for job in ("rewards", "payouts"):
        wait_for(f"a {job} run that started after the chaos succeeded", 240, lambda: succeeded_since(job))
    return holder


def parse_time(text):
    """Epoch seconds of an RFC 3339 time in UTC, as the API writes them."""
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))


def books(cluster, chaos_start):
    """Stops the jobs once the last payouts are in blocks, then checks locks, the audit and the
    chain's payments."""
    cluster.patch_jobs(True, ["rewards", "validators", "decay"])
    wait_for("the rewards, validators and decay runs to finish", 180,
             lambda: not cluster.active_jobs(["rewards", "validators", "decay"]))

    def open_batches():
        batches = cluster.api("/payout-batches?limit=200")["batches"]
        return [b for b in batches if b["state"] not in FINAL_BATCH_STATES]

    # Only a payouts run moves a batch on: let them run until none is open, then stop them; a
    # run that started in between may have opened one, so look again once it has finished.
    for _ in range(5):
        wait_for("no payout batch in flight", 300, lambda: not open_batches())
        cluster.patch_jobs(True, ["payouts"])
        wait_for("the payouts runs to finish", 180, lambda: not cluster.active_jobs(["payouts"]))
        if not open_batches():
            break
        cluster.patch_jobs(False, ["payouts"])
    stuck = open_batches()
    check(not stuck, f"payout batches left in flight: {stuck}")
    check(units(cluster.api("/stats")["inFlight"]) == 0, "the stats count units in flight")

    database = pymongo.MongoClient(os.environ["MONGODB_URI"], serverSelectionTimeoutMS=10000)["iNode"]

    def no_lock_held():
        # The server runs on this machine: one clock. The driver gives naive UTC times.
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        held = [(lock["_id"], str(lock["expires_at"])) for lock in database["jobLocks"].find()
                if lock["expires_at"].replace(tzinfo=None) > now]
        if held:
            raise Failed(f"held until: {held}")
        return True

    # A killed run's lock lapses by its TTL (60 s) after its last renewal.
    wait_for("no job lock held", 120, no_lock_held)

    config = os.path.join(cluster.cluster_dir, "minerpool.yaml")
    with open(config, "w") as f:
        f.write(kubectl("get", "configmap", "local-config", "-o", "jsonpath={.data.minerpool\\.yaml}"))
    audit = run("minerpool-job", "audit", "--config", config, check_status=False)
    summary = audit.stdout.strip().splitlines()[-1] if audit.stdout.strip() else "{}"
    check(audit.returncode == 0 and json.loads(summary).get("outcome") == "succeeded",
          f"the audit did not pass: {summary} {audit.stderr[-500:]}")

    paid_on_chain = chain_payments(cluster.chain, os.environ["INODE_WALLET"])
    recipients = set(paid_on_chain) | {
        os.environ[k] for k in ("POOL", "POOL_2", "VALIDATOR_1", "VALIDATOR_2", "VALIDATOR_3", "REWARD_ADDRESS")
    }
    for address in sorted(recipients):
        paid = units(cluster.balance(address)["paid"])
        check(paid == paid_on_chain.get(address, 0),
              f"{address}: the chain's blocks pay it {paid_on_chain.get(address, 0)} units, paid says {paid}")
    stats = cluster.api("/stats")
    runs = job_runs(cluster, chaos_start)
    cluster.patch_jobs(False, list(JOBS))
    return {"recipients": len(recipients), "credited": units(stats["credited"]),
            "paid": units(stats["paid"]), "on_chain": sum(paid_on_chain.values()), "runs": runs}


def chain_payments(chain, wallet):
    """Units the chain's blocks carry from `wallet` to each other address: its own proof."""
    paid, offset = {}, 0
    while True:
        blocks = http("GET", f"{chain}/get_blocks_details?offset={offset}&limit=500")["result"]
        if not blocks:
            return paid
        for block in blocks:
            for tx in block["transactions"]:
                if tx.get("is_coinbase") or not any(i.get("address") == wallet for i in tx.get("inputs", [])):
                    continue
                for output in tx["outputs"]:
                    if output["address"] != wallet:
                        paid[output["address"]] = paid.get(output["address"], 0) + units(output["amount"])
        offset = blocks[-1]["block"]["id"] + 1


def job_runs(cluster, since):
    """Runs of each job since `since`: failed (a failed outcome, or killed and never ended) and
    whether a later run succeeded."""
    found = {}
    for job in JOBS:
        runs = [r for r in cluster.api(f"/job-runs?job={job}&limit=200")["jobRuns"]
                if parse_time(r["startedAt"]) >= since]
        failed = [r for r in runs if r["outcome"] == "failed" or (r["outcome"] == "running" and not r.get("endedAt"))]
        last_failed = max((parse_time(r["startedAt"]) for r in failed), default=None)
        recovered = last_failed is None or any(
            r["outcome"] == "succeeded" and parse_time(r["startedAt"]) > last_failed for r in runs)
        check(recovered, f"no {job} run succeeded after its last failed one")
        found[job] = {"runs": len(runs), "failed": len(failed),
                      "blocked": sum(1 for r in runs if r["outcome"] == "blocked")}
    return found


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True, help="the node Service's cluster IP")
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("CHAOS_MINUTES", "3")))
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cluster = Cluster(args.node)
    seconds = args.minutes * 60
    log(f"{args.minutes:g} minutes, seed {args.seed}")

    # Decay would take from the scores being counted.
    cluster.patch_jobs(True, ["decay"])
    wait_for("no decay run in progress", 120, lambda: not cluster.active_jobs(["decay"]))
    # The disruptions that wait for their moment (a job's run, a budget that allows one) can
    # stretch the chaos past --minutes: the TASKs flow a little longer.
    loads = start_loads(cluster, seconds + 90, rate_per_validator=3.0)
    chaos = Chaos(cluster, rng)
    chaos_start = time.time()
    pending = list(KINDS)
    rng.shuffle(pending)
    while pending or time.time() - chaos_start < seconds:
        time.sleep(rng.uniform(3, max(3.0, min(20.0, (seconds - (time.time() - chaos_start)) / (len(pending) + 1)))))
        kind = pending.pop() if pending else rng.choice(KINDS)
        chaos.do(kind)
    chaos_end = time.time()
    log(f"chaos over after {chaos_end - chaos_start:.0f} s; waiting for the TASKs")
    for load in loads:
        load["process"].wait()
    tasks = check_scores(cluster, loads)
    cluster.patch_jobs(False, ["decay"])
    log("every pool's score is its SUCCESS replies' increments, each counted once")
    holder = settle(cluster, chaos_end)
    money = books(cluster, chaos_start)

    rows = [
        ("minutes of chaos", f"{(chaos_end - chaos_start) / 60:.1f} (seed {args.seed})"),
        *[(f"kills: {kind}", str(chaos.counts[kind])) for kind in KINDS],
        ("evictions allowed / refused by the budget", f"{chaos.evictions['allowed']} / {chaos.evictions['refused']}"),
        ("TASKs sent / succeeded / retried", f"{tasks['sent']} / {tasks['succeeded']} / {tasks['retries']}"),
        ("TASKs never answered SUCCESS", str(tasks["unanswered"])),
        *[(f"job runs: {job} (failed / blocked / all)",
           f"{r['failed']} / {r['blocked']} / {r['runs']}, recovered") for job, r in money["runs"].items()],
        ("units credited", str(money["credited"])),
        ("units paid = on chain", f"{money['paid']} = {money['on_chain']} ({money['recipients']} recipients)"),
        ("operator Lease held by", holder),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'chaos'.ljust(width)} | result")
    print(f"{'-' * width}-|-------")
    for key, value in rows:
        print(f"{key.ljust(width)} | {value}")
    check(money["paid"] == money["on_chain"], "paid differs from the chain's payments in total")


if __name__ == "__main__":
    try:
        main()
    except Failed as failure:
        log(f"FAIL: {failure}")
        sys.exit(1)
