"""No secret value reaches any output: validate, plan, render, --json, errors, repr."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
import yaml

from tests.helpers import example_site_data, run_cli, run_process, write_site

SECRETS = {
    "CUBE_T_REGISTRY": "reg-Pa55:w0rd'\"$(x)",
    "CUBE_T_CEPH": "AQBceph-secret-key==",
    "CUBE_T_MYSQL": "mysql-root-S3cret",
    "CUBE_T_REDIS": "redis-S3cret-value",
}


@pytest.fixture
def secret_site(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    data = example_site_data()
    data["registry"]["password"] = "${env:CUBE_T_REGISTRY}"
    data["storage"]["secret"] = "${env:CUBE_T_CEPH}"
    data["mysql"]["password"] = "${env:CUBE_T_MYSQL}"
    data["redis"]["password"] = "${env:CUBE_T_REDIS}"
    return write_site(tmp_path, data)


COMMANDS = [
    ["validate"],
    ["--json", "validate"],
    ["plan", "--offline", "--only", "namespaces", "--only", "kubeconfig"],
    ["--json", "plan", "--offline", "--only", "namespaces"],
    ["render"],
    ["--json", "render", "--only", "namespaces"],
    ["-v", "stages"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_no_secret_in_output(args, secret_site, capsys):
    code, out, err = run_cli(_with_config(args, secret_site), capsys)
    assert code == 0, out + err
    assert out.strip(), "the command printed nothing, so the test proves nothing"
    for value in SECRETS.values():
        assert value not in out and value not in err


def _with_config(args, path):
    # --config goes after the command name (global flags stay in front).
    index = next(i for i, a in enumerate(args) if not a.startswith("-"))
    return [*args[: index + 1], "-c", str(path), *args[index + 1:]]


def test_secret_in_error_text_is_masked(secret_site):
    """Even when a library echoes a password into an error, the output masks it."""
    import io

    from cubeinstall.cli.options import OPTIONS, load_context
    from cubeinstall.core.errors import StageFailed
    from cubeinstall.core.output import Output

    OPTIONS.config = secret_site
    ctx = load_context()
    stream = io.StringIO()
    out = Output(stream=stream)
    out.error(str(StageFailed("mysql", f"login failed for password {SECRETS['CUBE_T_MYSQL']}")))
    json_stream = io.StringIO()
    Output(json_mode=True, stream=json_stream).error("x", detail=SECRETS["CUBE_T_REDIS"])
    assert SECRETS["CUBE_T_MYSQL"] not in stream.getvalue() and "****" in stream.getvalue()
    assert SECRETS["CUBE_T_REDIS"] not in json_stream.getvalue()
    assert SECRETS["CUBE_T_MYSQL"] not in repr(ctx.site) and SECRETS["CUBE_T_MYSQL"] not in str(ctx.site.mysql)
    assert SECRETS["CUBE_T_MYSQL"] not in ctx.site.model_dump_json()


def test_secret_is_not_echoed_in_validation_errors(tmp_path, capsys):
    data = example_site_data()
    data["mysql"]["password"] = {"file": "secrets/mysql-root-password.demo", "extra": "hunter2-value"}
    path = write_site(tmp_path, data)
    code, _, err = run_cli(["validate", "-c", str(path)], capsys)
    assert code == 2 and "mysql.password" in err and "hunter2-value" not in err


def test_hubsecret_holds_the_registry_password_only_inside_secret_data(secret_site):
    import base64
    import json

    from cubeinstall.site.loader import load_site
    from cubeinstall.stages.rendered import all_objects

    rendered = all_objects(load_site(secret_site))
    secret = next(o for o in rendered["namespaces"] if o["kind"] == "Secret")
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config["auths"]["harbor.example.com"]["password"] == SECRETS["CUBE_T_REGISTRY"]
    for stage, objects in rendered.items():
        for obj in objects:
            if obj["kind"] != "Secret":
                assert SECRETS["CUBE_T_REGISTRY"] not in json.dumps(obj), (stage, obj["metadata"])


# --- a secret too short to mask; render's files holding Secret data ---------------------

def test_secret_too_short_to_mask_is_refused_naming_the_field(tmp_path, monkeypatch):
    """A 7-character secret would mask ordinary words (`cluster-****`): refused, exit 2."""
    monkeypatch.setenv("CUBE_T_SHORT", "Qz7wK2x")
    data = example_site_data()
    data["redis"]["password"] = "${env:CUBE_T_SHORT}"
    data["mysql"]["password"] = "Xv9pL3q"
    path = write_site(tmp_path, data)
    result = run_process(["validate", "-c", str(path)])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Qz7wK2x" not in result.stdout + result.stderr
    assert "Xv9pL3q" not in result.stdout + result.stderr
    text = path.read_text()
    for field, source in (("redis.password", "env:CUBE_T_SHORT"), ("mysql.password", "inline value")):
        [line] = [i for i, line in enumerate(text.splitlines(), 1)
                  if line.strip().startswith("password:") and
                  ("CUBE_T_SHORT" in line if "redis" in field else "Xv9pL3q" in line)]
        assert re.search(rf"site\.yaml:{line}:\d+: {re.escape(field)}: the secret \({source}\) is "
                         r"shorter than 8 characters", result.stderr), result.stderr


def test_short_values_never_mask_ordinary_words():
    from cubeinstall.core import redaction

    redaction.register("cube")  # shorter than the minimum: a site refuses it, redact ignores it
    redaction.register("Long-Enough-1")
    assert redaction.redact("cluster-cube, stage cube") == "cluster-cube, stage cube"
    assert redaction.redact("password Long-Enough-1 refused") == "password **** refused"


REGISTRY_IN_JSON = json.dumps(SECRETS["CUBE_T_REGISTRY"])[1:-1]  # as .dockerconfigjson holds it


def _secret_values(objects: list[dict]) -> str:
    import base64

    return " ".join(base64.b64decode(value).decode() for obj in objects if obj["kind"] == "Secret"
                    for value in (obj.get("data") or {}).values())


def test_render_out_writes_secret_data_0600_and_redact_writes_placeholders(secret_site, tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    plain, redacted = tmp_path / "plain", tmp_path / "redacted"
    for directory, extra in ((plain, []), (redacted, ["--redact"])):
        result = run_process(["render", "-c", str(secret_site), "--out", str(directory),
                              "--only", "namespaces", "--only", "gateway", *extra], env=SECRETS)
        assert result.returncode == 0, result.stderr
    namespaces = plain / "06-namespaces.yaml"
    objects = list(yaml.safe_load_all(namespaces.read_text()))
    assert REGISTRY_IN_JSON in _secret_values(objects)  # the pull secret's auth
    assert stat.S_IMODE(namespaces.stat().st_mode) == 0o600
    gateway = plain / "23-gateway.yaml"
    assert "kind: Secret" not in gateway.read_text()
    assert stat.S_IMODE(gateway.stat().st_mode) == 0o666 & ~umask

    redacted_objects = list(yaml.safe_load_all((redacted / "06-namespaces.yaml").read_text()))
    secrets = [obj for obj in redacted_objects if obj["kind"] == "Secret"]
    assert len(secrets) == len([obj for obj in objects if obj["kind"] == "Secret"]) > 0
    assert {value for obj in secrets for value in obj["data"].values()} == {"UkVEQUNURUQ="}
    assert set(_secret_values(redacted_objects).split()) == {"REDACTED"}
    assert [o for o in redacted_objects if o["kind"] != "Secret"] == \
        [o for o in objects if o["kind"] != "Secret"]
    assert stat.S_IMODE((redacted / "06-namespaces.yaml").stat().st_mode) == 0o666 & ~umask


def test_render_redact_to_stdout(secret_site):
    plain = run_process(["render", "-c", str(secret_site), "--only", "namespaces"], env=SECRETS)
    redacted = run_process(["render", "--redact", "-c", str(secret_site), "--only", "namespaces"],
                           env=SECRETS)
    assert plain.returncode == redacted.returncode == 0, plain.stderr + redacted.stderr
    assert REGISTRY_IN_JSON in _secret_values(list(yaml.safe_load_all(plain.stdout)))
    assert set(_secret_values(list(yaml.safe_load_all(redacted.stdout))).split()) == {"REDACTED"}
