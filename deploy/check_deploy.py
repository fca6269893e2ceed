"""Static checks of the deployment files (run by deploy/check-deploy.sh).

Each check reads the files the way their consumer would and compares the values that must agree
across files (ports, paths, time budgets, limits, user ids). Prints one line per check; exits 1
on the first group with a failure, naming every failed check of that group.

    python3 deploy/check_deploy.py ROOT
"""
import json
import os
import re
import shlex
import subprocess
import sys

import yaml  # PyYAML: required (deploy/check-deploy.sh installs it into .build/deploy-venv)

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
failures = []
passed = 0


def check(condition, what):
    global passed
    if condition:
        passed += 1
    else:
        failures.append(what)
        print(f"FAIL {what}")


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def parse_conf(text):
    """Switchboard's `key = value` format, as BrokerConfiguration.apply reads it."""
    out = {}
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"line {number}: expected key = value: {raw!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        out[key] = value
    return out


DEFAULTS = parse_conf(read("Config/switchboard.example.conf"))
KNOWN_KEYS = set(DEFAULTS)


def effective(conf):
    merged = dict(DEFAULTS)
    merged.update(conf)
    return merged


# --- Configuration files ---------------------------------------------------------------------
image_conf = effective(parse_conf(read("Config/switchboard.conf")))
check(set(parse_conf(read("Config/switchboard.conf"))) <= KNOWN_KEYS, "Config/switchboard.conf: only known keys")

# --- Dockerfile --------------------------------------------------------------------------------
def dockerfile_instructions(text):
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in text.split("\n"):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are removed by the builder
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    check(pending == "", "Dockerfile: no dangling line continuation")
    return out


KNOWN_INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                      "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}
docker = dockerfile_instructions(read("deploy/container/Dockerfile"))
for word, _ in docker:
    check(word in KNOWN_INSTRUCTIONS, f"Dockerfile: known instruction {word}")
args = {}
for word, rest in docker:
    if word == "ARG" and "=" in rest:
        k, v = rest.split("=", 1)
        args[k] = v
stages = []  # (image, name, [instructions])
for word, rest in docker:
    if word == "FROM":
        parts = rest.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
        name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
        stages.append((image, name, []))
    elif stages:
        stages[-1][2].append((word, rest))
check(len(stages) == 2, "Dockerfile: two stages (build, runtime)")
build_image, build_name, build_steps = stages[0]
run_image, _, run_steps = stages[-1]
check(re.fullmatch(r"swift:6\.\d+(\.\d+)?-bookworm", build_image) is not None, f"Dockerfile: build stage on a Swift 6 Debian 12 image ({build_image})")
check(run_image == "debian:bookworm-slim", f"Dockerfile: runtime stage on debian:bookworm-slim ({run_image}), same release as the build stage")
check(build_name == "build", "Dockerfile: build stage named 'build'")
for word, rest in run_steps:
    if word == "COPY" and "--from=" in rest:
        check(re.search(r"--from=(\S+)", rest).group(1) == build_name, "Dockerfile: COPY --from names the build stage")


def apt_packages(steps):
    pkgs = set()
    for word, rest in steps:
        if word == "RUN":
            for m in re.finditer(r"apt-get install ((?:-\S+\s+)*)((?:[a-z0-9][a-z0-9.+-]*\s*)+)", rest):
                pkgs.update(m.group(2).split())
    return pkgs


run_pkgs = apt_packages(run_steps)
check({"liburing2", "libssl3", "zlib1g"} <= run_pkgs, f"Dockerfile: runtime installs liburing2 libssl3 zlib1g ({sorted(run_pkgs)})")
check(not any(p.endswith("-dev") for p in run_pkgs), "Dockerfile: no -dev package in the runtime stage")
check({"liburing-dev", "libssl-dev", "zlib1g-dev"} <= apt_packages(build_steps), "Dockerfile: build stage installs the C headers")
check(any(w == "RUN" and "--static-swift-stdlib" in r for w, r in build_steps), "Dockerfile: Swift runtime linked statically")
users = [r for w, r in run_steps if w == "USER"]
check(len(users) == 1 and users[0].split(":")[0] not in ("0", "root"), f"Dockerfile: runtime runs as a non-root user ({users})")
image_uid = users[0].split(":")[0] if users else None
health = [r for w, r in run_steps if w == "HEALTHCHECK"]
check(len(health) == 1, "Dockerfile: one HEALTHCHECK")
if health:
    command = json.loads(health[0][health[0].index("CMD") + 3:].strip())
    check(command == ["/usr/local/bin/switchboard-healthcheck"], "Dockerfile: HEALTHCHECK runs the installed health script")
check("/health" in read("deploy/container/healthcheck.sh") and image_conf["health_path"] == "/health",
      "healthcheck.sh default path is the configured health_path")
for word in ("ENTRYPOINT", "CMD"):
    values = [r for w, r in run_steps if w == word]
    check(len(values) == 1, f"Dockerfile: one {word}")
    if values:
        check(isinstance(json.loads(values[0]), list), f"Dockerfile: {word} in exec form (signals reach the server, not a shell)")
entrypoint = json.loads([r for w, r in run_steps if w == "ENTRYPOINT"][0])
cmd = json.loads([r for w, r in run_steps if w == "CMD"][0])
check(entrypoint == ["/usr/local/bin/switchboard"] and cmd[:1] == ["--config"], "Dockerfile: switchboard --config FILE")
image_config_path = cmd[1]
check([r for w, r in run_steps if w == "EXPOSE"] == [image_conf["port"]], "Dockerfile: EXPOSE is the configured port")
check([r for w, r in run_steps if w == "STOPSIGNAL"] == ["SIGTERM"], "Dockerfile: STOPSIGNAL SIGTERM (graceful shutdown)")
build_text = " ".join(r for w, r in build_steps)
for rel in re.findall(r"\b((?:deploy|Config)/[\w./-]+)", build_text):
    check(os.path.exists(os.path.join(ROOT, rel)), f"Dockerfile: {rel} exists")
check(f"/staging{image_config_path}" in build_text, f"Dockerfile: a default {image_config_path} is baked in")
ignore = read("deploy/container/Dockerfile.dockerignore").split()
check(".build" in ignore and ".git" in ignore, "Dockerfile.dockerignore: leaves out .build and .git")

# The libraries the server links here must come from the runtime packages (or the base image).
binary = os.path.join(ROOT, ".build/debug/switchboard")
check(os.access(binary, os.X_OK), "built .build/debug/switchboard (swift build first)")
if os.access(binary, os.X_OK):
    base_image = {"libc6", "libgcc-s1", "libstdc++6", "libzstd1", "libcrypt1"}  # in debian:bookworm-slim
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for m in re.finditer(r"=> (/\S+)", ldd):
        path = m.group(1)
        if "/swift" in path or "libswift" in path or "libFoundation" in path or "libdispatch" in path or "libBlocksRuntime" in path:
            continue  # the Swift runtime: statically linked in the image
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        package = owner.stdout.split(":")[0] if owner.returncode == 0 else None
        check(package is not None and (package in run_pkgs or package in base_image),
              f"Dockerfile: runtime stage provides {os.path.basename(path)} (package {package})")

# --- systemd unit --------------------------------------------------------------------------------
def unit_values(text):
    values = {}
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key.strip(), []).append(value.strip())
    return values


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|min)?", text)
    return int(m.group(1)) * {"ms": 0.001, None: 1, "s": 1, "min": 60}[m.group(2)]


unit_text = read("deploy/systemd/switchboard.service")
unit = unit_values(unit_text)
for key, value in [("NoNewPrivileges", "yes"), ("DynamicUser", "yes"), ("ProtectSystem", "strict"),
                   ("Restart", "on-failure"), ("KillSignal", "SIGTERM"), ("PrivateDevices", "yes"),
                   ("SystemCallArchitectures", "native")]:
    check(unit.get(key) == [value], f"unit: {key}={value}")
exec_start = shlex.split(unit["ExecStart"][0])
check(exec_start[1:3] == ["--config", image_config_path], "unit: ExecStart reads the same config path as the image")
unit_nofile = int(unit["LimitNOFILE"][0])
check(unit_nofile >= 2 * int(DEFAULTS["max_connections_per_shard"]), "unit: LimitNOFILE holds two full shards")
unit_grace = seconds(unit["TimeoutStopSec"][0])
check(unit_grace > int(image_conf["shutdown_grace_ms"]) / 1000 + 5, "unit: TimeoutStopSec > shutdown_grace_ms + 5 s")

def expand_syscalls(name, seen=None):
    """Syscall names in a systemd group, as this machine's systemd defines it."""
    if not name.startswith("@"):
        return {name}
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True).stdout
    calls = set()
    for line in out.split("\n")[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= expand_syscalls(item) if item.startswith("@") else {item}
    return calls


allowed = None
for entry in unit.get("SystemCallFilter", []):
    deny = entry.startswith("~")
    names = set()
    for item in entry.lstrip("~").split():
        names |= expand_syscalls(item)
    if deny:
        allowed = (allowed if allowed is not None else expand_syscalls("@known")) - names
    else:
        allowed = names if allowed is None else allowed | names
needed = {"io_uring_setup", "io_uring_enter", "io_uring_register", "epoll_create1", "epoll_ctl", "epoll_wait",
          "accept4", "sched_setaffinity", "setrlimit", "prlimit64", "eventfd2", "mmap", "futex"}
check(allowed is not None and needed <= allowed,
      f"unit: SystemCallFilter allows io_uring and everything the server calls (missing: {sorted(needed - (allowed or set()))})")
families = unit.get("RestrictAddressFamilies", [""])[0].split()
check({"AF_INET", "AF_INET6"} <= set(families), "unit: RestrictAddressFamilies keeps AF_INET and AF_INET6")
# Every directive carries a comment saying why: a comment line sits somewhere in each
# block of consecutive directives.
block, uncommented = [], []
for raw in unit_text.split("\n") + [""]:
    line = raw.strip()
    if line and not line.startswith("["):
        block.append(line)
        continue
    if block and not any(l.startswith("#") for l in block) and not all(l.startswith(("Description", "ExecStart", "WantedBy")) for l in block):
        uncommented.append(block[0])
    block = []
check(not uncommented, f"unit: every group of directives has a comment ({uncommented})")

# --- sysctl -----------------------------------------------------------------------------------------
sysctl_lines = read("deploy/sysctl.d/90-switchboard.conf").split("\n")
sysctl = {}
for i, raw in enumerate(sysctl_lines):
    line = raw.strip()
    if not line or line.startswith(("#", ";")):
        continue
    key, _, value = line.partition("=")
    key, value = key.strip(), value.strip()
    optional = key.startswith("-")
    key = key.lstrip("-")
    above = i - 1  # keys sharing one comment: walk up over them to it
    while above >= 0 and sysctl_lines[above].strip() and not sysctl_lines[above].lstrip().startswith("#"):
        above -= 1
    check(above >= 0 and sysctl_lines[above].lstrip().startswith("#"), f"sysctl: {key} has a comment saying why")
    path = "/proc/sys/" + key.replace(".", "/")
    check(os.path.exists(path) or optional, f"sysctl: {key} exists on this kernel ({path}) or is marked optional with '-'")
    check(all(re.fullmatch(r"\d+", v) for v in value.split()), f"sysctl: {key} has a numeric value")
    sysctl[key] = [int(v) for v in value.split()]
check(sysctl["fs.nr_open"][0] >= unit_nofile, "sysctl: fs.nr_open >= the unit's LimitNOFILE")
check(sysctl["fs.file-max"][0] > sysctl["fs.nr_open"][0], "sysctl: fs.file-max > fs.nr_open")
check(sysctl["net.core.somaxconn"][0] >= int(DEFAULTS["listen_backlog"]), "sysctl: somaxconn >= listen_backlog")
check(sysctl["net.ipv4.tcp_max_syn_backlog"][0] >= int(DEFAULTS["listen_backlog"]), "sysctl: tcp_max_syn_backlog >= listen_backlog")
low, high = sysctl["net.ipv4.ip_local_port_range"]
check(low < high and not low <= int(image_conf["port"]) <= high, "sysctl: the server's port is outside the ephemeral range")
mem = sysctl["net.ipv4.tcp_mem"]
check(len(mem) == 3 and mem[0] < mem[1] < mem[2], "sysctl: tcp_mem is min < pressure < max")
for key in ("net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"):
    check(len(sysctl[key]) == 3 and sysctl[key][0] <= sysctl[key][1] <= sysctl[key][2], f"sysctl: {key} is min <= default <= max")

# --- Kubernetes ----------------------------------------------------------------------------------
kdir = "deploy/kubernetes"
docs = {}
for name in sorted(os.listdir(os.path.join(ROOT, kdir))):
    if not name.endswith(".yaml"):
        continue
    for doc in yaml.safe_load_all(read(f"{kdir}/{name}")):
        check(isinstance(doc, dict) and {"apiVersion", "kind"} <= set(doc), f"k8s: {name} is an object with apiVersion and kind")
        docs[doc["kind"]] = doc
        if doc["kind"] != "Kustomization":
            check(doc.get("metadata", {}).get("name") == "switchboard", f"k8s: {name} {doc['kind']} named switchboard")
kustom = docs["Kustomization"]
listed = set(kustom["resources"])
present = {n for n in os.listdir(os.path.join(ROOT, kdir)) if n.endswith(".yaml") and n != "kustomization.yaml"}
check(listed == present, f"k8s: kustomization lists every manifest ({sorted(listed ^ present)})")
configmap, deployment, service = docs["ConfigMap"], docs["Deployment"], docs["Service"]
check(deployment["apiVersion"] == "apps/v1" and service["apiVersion"] == "v1" and configmap["apiVersion"] == "v1", "k8s: stable API versions")
raw_conf = parse_conf(configmap["data"]["switchboard.conf"])
check(set(raw_conf) <= KNOWN_KEYS, f"k8s: ConfigMap uses only known keys ({sorted(set(raw_conf) - KNOWN_KEYS)})")
conf = effective(raw_conf)
pod = deployment["spec"]["template"]
labels = pod["metadata"]["labels"]
check(deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), "k8s: Deployment selector matches its pod labels")
check(service["spec"]["selector"].items() <= labels.items(), "k8s: Service selector matches the pod labels")
budget_selector = docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
check(budget_selector.items() <= labels.items(), "k8s: PodDisruptionBudget selector matches the pod labels")
check(docs["PodDisruptionBudget"]["spec"].get("maxUnavailable") == 1 and deployment["spec"]["replicas"] >= 2,
      "k8s: at most one broker down at a time, with at least two replicas")
containers = pod["spec"]["containers"]
check(len(containers) == 1, "k8s: one container")
c = containers[0]
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
check(ports.get("http") == int(conf["port"]), "k8s: containerPort 'http' is the configured port")
check(all(p["targetPort"] in ports for p in service["spec"]["ports"]), "k8s: Service targetPort names a container port")
for probe in ("readinessProbe", "livenessProbe"):
    get = c.get(probe, {}).get("httpGet", {})
    check(get.get("path") == conf["health_path"] and get.get("port") in ports, f"k8s: {probe} is GET {conf['health_path']} on a named port")
live, ready = c["livenessProbe"], c["readinessProbe"]
check(live["periodSeconds"] * live["failureThreshold"] > ready["periodSeconds"] * ready["failureThreshold"],
      "k8s: liveness gives up later than readiness (a slow pod is taken out of rotation before it is restarted)")
pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
check(pre_stop[0] == "sleep" and len(pre_stop) == 2, "k8s: preStop is a sleep")
budget = int(pre_stop[1]) + int(conf["shutdown_grace_ms"]) / 1000
grace = pod["spec"]["terminationGracePeriodSeconds"]
check(grace > budget + 5, f"k8s: terminationGracePeriodSeconds {grace} > preStop + shutdown_grace_ms + 5 s ({budget + 5:g})")
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
config_volume = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]]
check(len(config_volume) == 1 and config_volume[0] in mounts, "k8s: the ConfigMap is mounted")
if config_volume:
    check(c["args"] == ["--config", f"{mounts[config_volume[0]]}/switchboard.conf"] == cmd, "k8s: --config points at the mounted file (and matches the image's CMD)")
limits = c["resources"]["limits"]
check(int(conf["shards"]) == int(limits["cpu"]), "k8s: shards = limits.cpu (0 would count the node's CPUs)")
env = {e["name"]: e for e in c.get("env", [])}
check(all(name.startswith("SWITCHBOARD_") and name[len("SWITCHBOARD_"):].lower() in KNOWN_KEYS for name in env),
      "k8s: environment variables are SWITCHBOARD_<known key>")
pod_security = pod["spec"].get("securityContext", {})
check(pod_security.get("runAsNonRoot") is True and str(pod_security.get("runAsUser")) == image_uid, "k8s: runs as the image's non-root uid")
if pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault":
    check(conf["io_backend"] == "auto", "k8s: io_backend = auto under RuntimeDefault seccomp (io_uring may be blocked)")
security = c.get("securityContext", {})
check(security.get("allowPrivilegeEscalation") is False and security.get("readOnlyRootFilesystem") is True
      and security.get("capabilities", {}).get("drop") == ["ALL"], "k8s: no privilege escalation, read-only root, no capabilities")

# --- Compose: 3 nodes + Redis (issue 13) ---------------------------------------------------------
compose = yaml.safe_load(read("deploy/compose/compose.yaml"))
services = compose["services"]
redis_services = [n for n, s in services.items() if str(s.get("image", "")).startswith("redis:")]
check(len(redis_services) == 1, f"compose: one Redis service ({redis_services})")
redis_name = redis_services[0] if redis_services else None
redis = services.get(redis_name, {})
check(re.fullmatch(r"redis:7(\.\d+)*(-\w+)?", str(redis.get("image"))) is not None, f"compose: Redis 7 ({redis.get('image')})")
redis_cmd = redis.get("command", [])
redis_port = redis_cmd[redis_cmd.index("--port") + 1] if "--port" in redis_cmd else "6379"
check("CMD" in redis.get("healthcheck", {}).get("test", []) and redis_port in redis["healthcheck"]["test"],
      "compose: Redis health check pings its port")
nodes = {n: s for n, s in services.items() if n != redis_name}
check(len(nodes) >= 3, f"compose: at least 3 nodes ({sorted(nodes)})")
node_ids, host_ports = [], []
for name, svc in nodes.items():
    env = {k: str(v) for k, v in svc.get("environment", {}).items()}
    check(all(k.startswith("SWITCHBOARD_") and k[len("SWITCHBOARD_"):].lower() in KNOWN_KEYS for k in env),
          f"compose {name}: environment variables are SWITCHBOARD_<known key>")
    node_conf = effective({**image_conf, **{k[len("SWITCHBOARD_"):].lower(): v for k, v in env.items()}})
    check(node_conf.get("cluster_engine") == "redis", f"compose {name}: cluster_engine = redis")
    url = re.fullmatch(r"redis://([^:/]+):(\d+)(/\d+)?", node_conf.get("cluster_redis_url", ""))
    check(url is not None and url.group(1) == redis_name and url.group(2) == redis_port,
          f"compose {name}: cluster_redis_url names the Redis service and its port ({node_conf.get('cluster_redis_url')})")
    node_id = node_conf.get("cluster_node_id", "")
    check(node_id.isdigit() and 0 <= int(node_id) <= 255, f"compose {name}: cluster_node_id 0...255 ({node_id})")
    node_ids.append(node_id)
    heartbeat, ttl = int(node_conf["cluster_heartbeat_ms"]), int(node_conf["cluster_node_ttl_ms"])
    check(heartbeat >= 10 and ttl >= 2 * heartbeat, f"compose {name}: cluster_node_ttl_ms >= 2 x cluster_heartbeat_ms")
    build = svc.get("build", {})
    check(os.path.normpath(os.path.join("deploy/compose", build.get("context", ""), build.get("dockerfile", "")))
          == "deploy/container/Dockerfile", f"compose {name}: built from deploy/container/Dockerfile")
    check(svc.get("depends_on", {}).get(redis_name, {}).get("condition") == "service_healthy",
          f"compose {name}: starts once Redis is healthy")
    check(svc.get("stop_signal") == "SIGTERM", f"compose {name}: stop_signal SIGTERM (graceful shutdown)")
    grace = seconds(str(svc.get("stop_grace_period", "10s")))
    check(grace > int(image_conf["shutdown_grace_ms"]) / 1000 + 5, f"compose {name}: stop_grace_period > shutdown_grace_ms + 5 s")
    ports = [str(p).split(":") for p in svc.get("ports", [])]
    check(len(ports) == 1 and ports[0][-1] == image_conf["port"], f"compose {name}: publishes the configured port {image_conf['port']}")
    host_ports += [p[0] for p in ports]
check(len(set(node_ids)) == len(node_ids), f"compose: node ids distinct ({node_ids})")
check(len(set(host_ports)) == len(host_ports), f"compose: host ports distinct ({host_ports})")

print(f"{passed} checks passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
