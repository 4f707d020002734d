"""render/pyassign.py: top-level assignments replaced at their ast ranges, nothing else touched."""

from __future__ import annotations

import ast

import pytest

from cubeinstall.core.errors import CubeError
from cubeinstall.render.pyassign import python_literal, replace_assignments

SOURCE = '''# 所有集群
import os
A=[]    # ['内网ip'] 注释
B = {
    "dev": {"NAME": "dev"},   # 和project一致
}
def f():
    A = 1          # not top level
if os.environ.get("X"):
    C = 2          # not top level either
D: str = 'x'
Q = '中文'; E = []
'''


def test_only_the_values_change_and_utf8_columns_are_right():
    result = replace_assignments(SOURCE, {"A": ["10.0.0.1"], "D": "y", "E": [1]}, "f.py")
    assert result == (SOURCE.replace("A=[]    #", "A=['10.0.0.1']    #").replace("= 'x'", "= 'y'")
                      .replace("E = []", "E = [1]"))


def test_a_multi_line_value_is_replaced_whole():
    result = replace_assignments(SOURCE, {"B": {"main": {"NAME": "main"}}}, "f.py")
    namespace: dict = {}
    exec(compile(result, "f.py", "exec"), namespace)
    assert namespace["B"] == {"main": {"NAME": "main"}}
    assert result.startswith(SOURCE[:SOURCE.index("B = ")])
    assert result.endswith(SOURCE[SOURCE.index("\ndef f():"):])


@pytest.mark.parametrize("source, words", [
    (SOURCE, "no top-level assignment of C"),
    (SOURCE + "C = 3\nC = 4\n", "C is assigned 2 times at top level (lines 13, 14)"),
    (SOURCE + "C, E = 1, 2\n", "not a plain `C = value` assignment"),
    (SOURCE + "C = E = 1\n", "not a plain `C = value` assignment"),
    (SOURCE + "C = 1\nC += 1\n", "C is assigned 2 times"),
])
def test_unexpected_files_are_refused_naming_the_file(source, words):
    with pytest.raises(CubeError) as info:
        replace_assignments(source, {"C": 1}, "cube-studio v1 config.py")
    assert info.value.message.startswith("cube-studio v1 config.py: ")
    assert words in info.value.message


@pytest.mark.parametrize("value", [
    None, True, 3, 1.5, "it's \"quoted\" \\ 中文", [], {}, ["a", "b"], ["a", "b", "c"],
    [["image:1", "label（cpu）"]], {"k": [1, {"x": None}], "e": ()}, ("one",), (1, 2, 3),
])
def test_python_literal_round_trips(value):
    assert ast.literal_eval(python_literal(value)) == value


def test_python_literal_refuses_other_objects():
    with pytest.raises(TypeError):
        python_literal(object())
