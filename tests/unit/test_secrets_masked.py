"""No secret value reaches any output: validate, plan, render, --json, errors, repr."""

from __future__ import annotations

import pytest

from tests.helpers import example_site_data, run_cli, write_site

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
